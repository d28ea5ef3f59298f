# PyinfraIis module, part 52: Set-IisConfig, edits of applicationHost.config committed together with
# ONE CommitChanges(), or none (MWA helpers: part 50).
#
# Contract: docs/remote-functions.md, "Change: IIS configuration". Microsoft docs relied on [V]:
# Configuration.GetSection(String, String) (location paths), ConfigurationElementCollection
# (CreateElement, Add, Remove), ConfigurationElement (GetChildElement, SetAttributeValue)
# https://learn.microsoft.com/dotnet/api/microsoft.web.administration.configurationelementcollection
# What a <location> writes explicitly is read from the XML of applicationHost.config (part 51) [I].

# Attributes of a site binding that IIS keeps in HTTP.sys, not in applicationHost.config: the
# RSCA schema extension (inetsrv\config\schema\rscaext.xml) adds them to <binding>, and MWA writes
# the HTTP.sys SSL certificate binding when the change is committed (this is what MWA's
# Binding.CertificateHash / CertificateStoreName do) [I: not checked on Windows]. IIS_schema.xml
# does not declare them, so they are set even when the element's schema does not list them.
$script:BindingCertificateAttributes = @('certificateHash', 'certificateStoreName')

function ConvertTo-BindingCertificateValue {
    <#
    .SYNOPSIS
    Return the value to store for a binding's certificateHash (the thumbprint as bytes, as MWA's
    Binding.CertificateHash takes it) or certificateStoreName (the store name as it is).
    .PARAMETER Text
    certificateHash: 40 hex digits (SHA-1 thumbprint); certificateStoreName: "My", "WebHosting", ...
    .OUTPUTS
    [byte[]] or [string]. Throws when the thumbprint is not hex of even length.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Name,
        [Parameter(Mandatory = $true)]
        [AllowEmptyString()]
        [string] $Text,
        [Parameter(Mandatory = $true)]
        [string] $Where
    )
    if ($Name -cne 'certificateHash') { return $Text }
    if ($Text -notmatch '^([0-9A-Fa-f]{2})+$') {
        throw ('{0}: a certificate thumbprint is hex digits (40 for SHA-1), got "{1}"' -f $Where, $Text)
    }
    $bytes = New-Object -TypeName 'byte[]' -ArgumentList ($Text.Length / 2)
    for ($index = 0; $index -lt $bytes.Length; $index++) {
        $bytes[$index] = [System.Convert]::ToByte($Text.Substring($index * 2, 2), 16)
    }
    return , $bytes
}

function Format-ConfigItemStep {
    <#
    .SYNOPSIS
    Describe an item step for messages: add[name=api], binding[protocol=https,bindingInformation=*:443:x].
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Tag,
        [Parameter(Mandatory = $true)]
        [psobject] $Key
    )
    $pairs = New-Object -TypeName 'System.Collections.Generic.List[string]'
    foreach ($property in $Key.PSObject.Properties) {
        $pairs.Add(('{0}={1}' -f $property.Name, $property.Value))
    }
    return '{0}[{1}]' -f $Tag, [string]::Join(',', $pairs.ToArray())
}

function Test-ConfigItemKey {
    <#
    .SYNOPSIS
    Tell whether every key attribute of a collection item equals Key's value (case-insensitively, as
    the contract says): as IIS writes it (Format-ConfigValue) for an MWA ConfigurationElement, as
    written for an XML element of applicationHost.config.
    .PARAMETER Item
    A Microsoft.Web.Administration.ConfigurationElement or a System.Xml.XmlElement.
    .PARAMETER Key
    JSON object attribute name -> string value.
    .OUTPUTS
    [bool]; false when the item lacks a key attribute.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [object] $Item,
        [Parameter(Mandatory = $true)]
        [psobject] $Key
    )
    foreach ($property in $Key.PSObject.Properties) {
        $text = $null
        if ($Item -is [System.Xml.XmlElement]) {
            if ($Item.HasAttribute($property.Name)) { $text = $Item.GetAttribute($property.Name) }
        } else {
            $attribute = Find-ConfigAttribute -Element $Item -Name $property.Name
            if ($null -ne $attribute) { $text = Format-ConfigValue -Schema $attribute.Schema -Value $attribute.Value }
        }
        if ($null -eq $text -or -not [string]::Equals($text, [string]$property.Value, [System.StringComparison]::OrdinalIgnoreCase)) {
            return $false
        }
    }
    return $true
}

function Find-ConfigItem {
    <#
    .SYNOPSIS
    Return the item of a collection with the given tag whose key attributes equal Key
    (case-insensitively, as the contract says), or $null.
    .PARAMETER Collection
    A Microsoft.Web.Administration.ConfigurationElementCollection.
    .PARAMETER Key
    JSON object attribute name -> string value.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [object] $Collection,
        [Parameter(Mandatory = $true)]
        [string] $Tag,
        [Parameter(Mandatory = $true)]
        [psobject] $Key
    )
    foreach ($item in $Collection) {
        if ([string]$item.ElementTagName -eq $Tag -and (Test-ConfigItemKey -Item $item -Key $Key)) { return , $item }
    }
    return $null
}

function Find-XmlConfigItem {
    <#
    .SYNOPSIS
    The XML twin of Find-ConfigItem: the child element with the tag (case-sensitive, as XML) whose
    attributes equal Key (case-insensitively), or $null. Used to tell what a <location> writes
    explicitly.
    .PARAMETER Parent
    A System.Xml.XmlNode, or $null (then the answer is $null).
    #>
    [CmdletBinding()]
    param(
        [AllowNull()]
        [System.Xml.XmlNode] $Parent,
        [Parameter(Mandatory = $true)]
        [string] $Tag,
        [Parameter(Mandatory = $true)]
        [psobject] $Key
    )
    if ($null -eq $Parent) { return $null }
    foreach ($child in $Parent.get_ChildNodes()) {
        if ($child.get_NodeType() -eq [System.Xml.XmlNodeType]::Element -and $child.get_LocalName() -ceq $Tag -and
            (Test-ConfigItemKey -Item $child -Key $Key)) {
            return , $child
        }
    }
    return $null
}

function New-SiteId {
    <#
    .SYNOPSIS
    Return a unique id for a new site: the largest existing site id + 1 (contract), 1 for the first.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [object] $Collection
    )
    $largest = [long]0
    foreach ($site in $Collection) {
        $id = $site.GetAttributeValue('id')
        if ($null -ne $id -and [long]$id -gt $largest) { $largest = [long]$id }
    }
    return [uint32]($largest + 1)
}

function Invoke-IisConfigEdit {
    <#
    .SYNOPSIS
    Apply one EDIT of Set-IisConfig to the in-memory configuration (no commit).
    .PARAMETER Configuration
    From ServerManager.GetApplicationHostConfiguration().
    .PARAMETER Document
    applicationHost.config as XML, read before any change (to tell what a <location> writes
    explicitly); $null when no edit has a location.
    .PARAMETER Edit
    {"section", "location", "path": [STEP], "action": "set"|"remove", "attributes": {name: string}}.
    .PARAMETER Changed
    List receiving one description per change (secrets as digests).
    .OUTPUTS
    [bool]: true when the configuration was modified (it may be modified without a reported change
    when an attribute that already had this value becomes explicit under a <location>).
    Throws naming the edit's path when the section, a step or a value is invalid.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [object] $Configuration,
        [AllowNull()]
        [System.Xml.XmlDocument] $Document,
        [Parameter(Mandatory = $true)]
        [psobject] $Edit,
        [Parameter(Mandatory = $true)]
        [AllowEmptyCollection()]
        [System.Collections.Generic.List[string]] $Changed,
        [string] $Function = 'Set-IisConfig'
    )
    $section = Get-CallValue -Call $Edit -Name 'section' -Type string -Required -Function $Function
    $location = Get-CallValue -Call $Edit -Name 'location' -Type string -Function $Function
    $steps = Get-CallValue -Call $Edit -Name 'path' -Type array -Function $Function
    $action = Get-CallValue -Call $Edit -Name 'action' -Type string -Default 'set' -Function $Function
    if ($action -cne 'set' -and $action -cne 'remove') {
        throw ('"action" must be "set" or "remove", got "{0}"' -f $action)
    }
    $attributes = Get-CallValue -Call $Edit -Name 'attributes' -Type object -Function $Function
    if ($action -eq 'remove' -and ($steps.Count -eq 0 -or $null -eq (Get-CallValue -Call $steps[-1] -Name 'item'))) {
        throw 'a remove edit needs a path whose last step is an item step'
    }

    $where = $section
    if ($null -ne $location) {
        $where = 'location[{0}]/{1}' -f $location, $section
        $element = $Configuration.GetSection($section, $location)
        $xml = $null
        if ($null -ne $Document) {
            foreach ($candidate in $Document.get_DocumentElement().get_ChildNodes()) {
                if ($candidate.get_NodeType() -eq [System.Xml.XmlNodeType]::Element -and $candidate.get_LocalName() -eq 'location' -and
                    [string]::Equals($candidate.GetAttribute('path'), $location, [System.StringComparison]::OrdinalIgnoreCase)) {
                    $found = Find-XmlSection -Parent $candidate -Section $section
                    if ($null -ne $found) { $xml = $found }
                }
            }
        }
    } else {
        $element = $Configuration.GetSection($section)
        $xml = $null
    }

    $modified = $false
    $parentTag = [string]$element.ElementTagName
    $inEnvironmentVariables = $false
    for ($index = 0; $index -lt $steps.Count; $index++) {
        $step = $steps[$index]
        if ($step -isnot [System.Management.Automation.PSCustomObject]) {
            throw ('{0}: path step {1} must be a JSON object' -f $where, $index)
        }
        $childTag = Get-CallValue -Call $step -Name 'child' -Type string -Function $Function
        $itemTag = Get-CallValue -Call $step -Name 'item' -Type string -Function $Function
        if ($null -ne $childTag) {
            try {
                $element = $element.GetChildElement($childTag)
            } catch {
                throw ('{0}: <{1}> has no child element <{2}>' -f $where, $parentTag, $childTag)
            }
            if ($null -ne $xml) { $xml = Find-XmlChildElement -Parent $xml -Tag $childTag }
            $where = '{0}/{1}' -f $where, $childTag
            $parentTag = $childTag
            $inEnvironmentVariables = $false
            continue
        }
        if ($null -eq $itemTag) {
            throw ('{0}: path step {1} needs "child" or "item"' -f $where, $index)
        }
        $key = Get-CallValue -Call $step -Name 'key' -Type object -Required -Function $Function
        if ($null -eq $element.Schema.CollectionSchema) {
            throw ('{0}: <{1}> holds no collection, so it has no <{2}> items' -f $where, $parentTag, $itemTag)
        }
        $collection = $element.GetCollection()
        $stepText = Format-ConfigItemStep -Tag $itemTag -Key $key
        $item = Find-ConfigItem -Collection $collection -Tag $itemTag -Key $key
        $isLast = $index -eq ($steps.Count - 1)
        if ($action -eq 'remove') {
            if ($null -eq $item) { return $modified }  # removing an absent item is not an error
            if ($isLast) {
                $collection.Remove($item)
                $Changed.Add(('{0}/{1}: removed' -f $where, $stepText))
                return $true
            }
        } elseif ($null -eq $item) {
            $item = $collection.CreateElement($itemTag)
            foreach ($property in $key.PSObject.Properties) {
                $keyAttribute = Find-ConfigAttribute -Element $item -Name $property.Name
                if ($null -eq $keyAttribute) {
                    throw ('{0}: <{1}> has no key attribute "{2}"' -f $where, $itemTag, $property.Name)
                }
                $value = ConvertFrom-ConfigValue -Schema $keyAttribute.Schema -Text ([string]$property.Value) -Where ('{0}/{1}@{2}' -f $where, $stepText, $property.Name)
                $item.SetAttributeValue($property.Name, $value)
            }
            if ($section -eq 'system.applicationHost/sites' -and $itemTag -ceq 'site' -and $null -eq $key.PSObject.Properties['id']) {
                $item.SetAttributeValue('id', (New-SiteId -Collection $collection))
            }
            [void]$collection.Add($item)
            $Changed.Add(('{0}/{1}: added' -f $where, $stepText))
            $modified = $true
        }
        $inEnvironmentVariables = $parentTag -eq 'environmentVariables'
        $element = $item
        $xml = Find-XmlConfigItem -Parent $xml -Tag $itemTag -Key $key
        $where = '{0}/{1}' -f $where, $stepText
        $parentTag = $itemTag
    }
    if ($action -eq 'remove') { return $modified }

    foreach ($name in (Get-CallMemberNames -Object $attributes)) {
        $text = $attributes.PSObject.Properties[$name].Value
        $attributeWhere = '{0}@{1}' -f $where, $name
        if ($text -isnot [string]) {
            throw ('{0}: attribute values are strings, got {1}' -f $attributeWhere, (Get-JsonTypeName -Value $text))
        }
        $secret = Test-SecretConfigAttribute -Name $name -InEnvironmentVariables $inEnvironmentVariables
        $attribute = Find-ConfigAttribute -Element $element -Name $name
        $certificateAttribute = $parentTag -ceq 'binding' -and $script:BindingCertificateAttributes -ccontains $name
        if ($null -eq $attribute) {
            if (-not $certificateAttribute -and ($null -eq $element.Schema -or -not $element.Schema.AllowUnrecognizedAttributes)) {
                throw ('{0}: <{1}> has no attribute "{2}" in the IIS schema' -f $where, $parentTag, $name)
            }
            $element.SetAttributeValue($name, (ConvertTo-BindingCertificateValue -Name $name -Text $text -Where $attributeWhere))
            $modified = $true
            $Changed.Add(('{0}: {1} -> {2}' -f $attributeWhere, (Format-ChangeValue -Text '' -Present $false -Secret $secret), (Format-ChangeValue -Text $text -Secret $secret)))
            continue
        }
        if ($certificateAttribute) {
            $value = ConvertTo-BindingCertificateValue -Name $name -Text $text -Where $attributeWhere
        } else {
            $value = ConvertFrom-ConfigValue -Schema $attribute.Schema -Text $text -Where $attributeWhere -Secret $secret
        }
        $old = Format-ConfigValue -Schema $attribute.Schema -Value $attribute.Value
        $new = Format-ConfigValue -Schema $attribute.Schema -Value $value
        if ($null -ne $location) {
            $explicit = $null -ne $xml -and $xml.HasAttribute($name)
        } else {
            $explicit = -not $attribute.IsInheritedFromDefaultValue
        }
        if ($explicit -and $old -ceq $new) { continue }
        $element.SetAttributeValue($name, $value)
        $modified = $true
        # As the simulator words it: the value written in the file before (null when none).
        $Changed.Add(('{0}: {1} -> {2}' -f $attributeWhere, (Format-ChangeValue -Text $old -Present $explicit -Secret $secret), (Format-ChangeValue -Text $new -Secret $secret)))
    }
    return $modified
}

function Format-ChangeValue {
    <#
    .SYNOPSIS
    Return a value for a Set-IisConfig change line, as the simulator writes it: null when the
    attribute was not written in the file, "*MASKED*" for a secret, else the JSON string.
    #>
    [CmdletBinding()]
    param(
        [AllowEmptyString()]
        [string] $Text,
        [bool] $Present = $true,
        [bool] $Secret = $false
    )
    if (-not $Present) { return 'null' }
    if ($Secret) { return '"*MASKED*"' }
    return (ConvertTo-Json -InputObject $Text -Compress)
}

function Get-EditSecretValues {
    <#
    .SYNOPSIS
    Return the secret attribute values of a Set-IisConfig call (password attributes and the value
    attributes of items under environmentVariables), to mask them in error messages.
    .OUTPUTS
    [string[]] of non-empty values.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [AllowEmptyCollection()]
        [object[]] $Edits
    )
    $secrets = New-Object -TypeName 'System.Collections.Generic.List[string]'
    foreach ($edit in $Edits) {
        if ($edit -isnot [System.Management.Automation.PSCustomObject]) { continue }
        $attributes = Get-CallValue -Call $edit -Name 'attributes'
        if ($attributes -isnot [System.Management.Automation.PSCustomObject]) { continue }
        $steps = Get-CallValue -Call $edit -Name 'path'
        $inEnvironmentVariables = $false
        if ($steps -is [array] -and $steps.Count -ge 2 -and $steps[-2] -is [System.Management.Automation.PSCustomObject]) {
            $inEnvironmentVariables = (Get-CallValue -Call $steps[-2] -Name 'child') -eq 'environmentVariables'
        }
        foreach ($property in $attributes.PSObject.Properties) {
            if ($property.Value -is [string] -and $property.Value.Length -gt 0 -and
                (Test-SecretConfigAttribute -Name $property.Name -InEnvironmentVariables $inEnvironmentVariables)) {
                $secrets.Add($property.Value)
            }
        }
    }
    return , $secrets.ToArray()
}

function Hide-SecretText {
    <#
    .SYNOPSIS
    Replace every secret value inside Text with *MASKED* (for error messages).
    #>
    [CmdletBinding()]
    param(
        [AllowEmptyString()]
        [string] $Text,
        [AllowEmptyCollection()]
        [string[]] $Secrets = @()
    )
    foreach ($secret in $Secrets) {
        $Text = $Text.Replace($secret, '*MASKED*')
    }
    return $Text
}

function Set-IisConfig {
    <#
    .SYNOPSIS
    Apply edits to applicationHost.config, all committed together with ONE CommitChanges(), or none.
    .PARAMETER Json
    {"edits": [EDIT, ...]} (docs/remote-functions.md, "Change: IIS configuration"):
    EDIT = {"section", "location": null | "Site" | "Site/app", "path": [STEP, ...],
            "action": "set" | "remove", "attributes": {name: string}};
    "action" defaults to "set".
    STEP = {"child": tag} (created if missing) | {"item": tag, "key": {name: value}} (matched
    case-insensitively; created with its key attributes when missing, set only). A new site gets the
    largest site id + 1 when its key has no id.
    .OUTPUTS
    One line {"changed": ["<where>@<attr>: \"old\" -> \"new\"", "<where>/<item>: added",
    "<where>/<item>: removed", ...]} (the simulator's wording); <where> is the section path and
    the steps (add[name=api]/processModel), prefixed with "location[<path>]/" for a location; the
    old value is null when the file did not hold the attribute. Nothing is committed when nothing
    changed. Secret values (password attributes, environment variable values) show as "*MASKED*".
    Throws naming the edit (index and path) when an edit is invalid or IIS rejects it; then nothing
    is written. Error messages never contain secret values.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [AllowEmptyString()]
        [string] $Json
    )
    $function = 'Set-IisConfig'
    $call = ConvertFrom-CallJson -Json $Json -Function $function
    $edits = Get-CallValue -Call $call -Name 'edits' -Type array -Required -Function $function
    $secrets = Get-EditSecretValues -Edits $edits
    $manager = New-IisServerManager -Function $function
    try {
        $configuration = $manager.GetApplicationHostConfiguration()
        $document = $null
        foreach ($edit in $edits) {
            if ($edit -is [System.Management.Automation.PSCustomObject] -and $null -ne (Get-CallValue -Call $edit -Name 'location')) {
                $document = Read-ApplicationHostXml
                break
            }
        }
        $changed = New-Object -TypeName 'System.Collections.Generic.List[string]'
        $modified = $false
        for ($index = 0; $index -lt $edits.Count; $index++) {
            $edit = $edits[$index]
            try {
                if ($edit -isnot [System.Management.Automation.PSCustomObject]) {
                    throw ('must be a JSON object, got {0}' -f (Get-JsonTypeName -Value $edit))
                }
                if (Invoke-IisConfigEdit -Configuration $configuration -Document $document -Edit $edit -Changed $changed -Function $function) {
                    $modified = $true
                }
            } catch {
                throw (Hide-SecretText -Text ('{0}: edit {1} failed, nothing was changed: {2}' -f $function, $index, $_.Exception.Message) -Secrets $secrets)
            }
        }
        if ($modified) {
            try {
                $manager.CommitChanges()
            } catch {
                throw (Hide-SecretText -Text ('{0}: CommitChanges failed, nothing was changed: {1}' -f $function, $_.Exception.Message) -Secrets $secrets)
            }
        }
        Write-CallResult -InputObject ([ordered]@{ changed = $changed.ToArray() })
    } finally {
        $manager.Dispose()
    }
}
