# PyinfraIis module, part 51: the IIS configuration Get-HostState reports ("iis": sections and
# locations), as ELEMENTs {attributes, children, items} (MWA helpers: part 50).
#
# Contract: docs/remote-functions.md, "Read: Get-HostState" (ELEMENT, sections reported).
# Microsoft docs relied on [V]: Configuration.GetSection(String), ConfigurationElement
# (Attributes, ChildElements, GetCollection, Schema)
# https://learn.microsoft.com/dotnet/api/microsoft.web.administration.configuration.getsection
# Inference [I], not checked on Windows: at server level the sections we report are defined only
# in applicationHost.config, so "not IsInheritedFromDefaultValue" means "written in the file".
# Under a <location> the merged view also holds what the server level sets, so explicit content of
# a location is read from the XML of applicationHost.config instead (with MWA's schema to tell
# child elements from collection items).

function New-ConfigElementJson {
    <#
    .SYNOPSIS
    Return an empty ELEMENT: [ordered]@{attributes = {}; children = {}; items = []}.
    #>
    [CmdletBinding()]
    param()
    return [ordered]@{
        attributes = [ordered]@{}
        children = [ordered]@{}
        # ::new(), not New-Object: New-Object wraps its result in a PSObject, and Windows PowerShell
        # 5.1's ConvertTo-Json writes a PSObject-wrapped list as {"value": [...], "Count": n} [R].
        items = [System.Collections.ArrayList]::new()
    }
}

function Add-ConfigElementJsonItem {
    <#
    .SYNOPSIS
    Append a collection item to an ELEMENT's items: {tag, attributes, children, items}.
    .PARAMETER Element
    The ELEMENT (New-ConfigElementJson) that holds the collection.
    .PARAMETER Tag
    The item's tag (add, remove, clear, binding, ...).
    .PARAMETER Item
    The item's own ELEMENT.
    .OUTPUTS
    Nothing.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [System.Collections.IDictionary] $Element,
        [Parameter(Mandatory = $true)]
        [string] $Tag,
        [Parameter(Mandatory = $true)]
        [System.Collections.IDictionary] $Item
    )
    $entry = [ordered]@{ tag = $Tag }
    foreach ($key in @($Item.Keys)) { $entry[$key] = $Item[$key] }
    [void]$Element['items'].Add($entry)
}

function Test-ConfigElementJsonEmpty {
    <#
    .SYNOPSIS
    Tell whether an ELEMENT holds nothing (no attribute, child or item).
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [System.Collections.IDictionary] $Element
    )
    return $Element['attributes'].Count -eq 0 -and $Element['children'].Count -eq 0 -and $Element['items'].Count -eq 0
}

function ConvertTo-ConfigElementJson {
    <#
    .SYNOPSIS
    Return the ELEMENT form of an MWA ConfigurationElement read at server level: only attributes
    written in the file (not IsInheritedFromDefaultValue), child elements that hold something, and
    collection items in order, each with its tag.
    .PARAMETER Element
    A Microsoft.Web.Administration.ConfigurationElement (a section is one).
    .PARAMETER DigestKey
    Key of the secret digests (ConvertTo-SecretDigest), from Get-HostState's call.
    .PARAMETER InEnvironmentVariables
    The element is an item of an environmentVariables collection (its value is a secret).
    .OUTPUTS
    Ordered dictionary {attributes, children, items}; secret values as ConvertTo-SecretDigest.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [object] $Element,
        [Parameter(Mandatory = $true)]
        [byte[]] $DigestKey,
        [bool] $InEnvironmentVariables = $false
    )
    $json = New-ConfigElementJson
    foreach ($attribute in $Element.Attributes) {
        if ($attribute.IsInheritedFromDefaultValue) { continue }
        $text = Format-ConfigValue -Schema $attribute.Schema -Value $attribute.Value
        if (Test-SecretConfigAttribute -Name $attribute.Name -InEnvironmentVariables $InEnvironmentVariables) {
            $text = ConvertTo-SecretDigest -Value $text -Key $DigestKey
        }
        $json['attributes'][[string]$attribute.Name] = $text
    }
    foreach ($child in $Element.ChildElements) {
        $childJson = ConvertTo-ConfigElementJson -Element $child -DigestKey $DigestKey
        # ChildElements lists every child the schema declares, written in the file or not.
        if (-not (Test-ConfigElementJsonEmpty -Element $childJson)) {
            $json['children'][[string]$child.ElementTagName] = $childJson
        }
    }
    if ($null -ne $Element.Schema -and $null -ne $Element.Schema.CollectionSchema) {
        $itemsAreSecret = [string]$Element.ElementTagName -eq 'environmentVariables'
        foreach ($item in $Element.GetCollection()) {
            $itemJson = ConvertTo-ConfigElementJson -Element $item -DigestKey $DigestKey -InEnvironmentVariables $itemsAreSecret
            Add-ConfigElementJsonItem -Element $json -Tag ([string]$item.ElementTagName) -Item $itemJson
        }
    }
    return $json
}

function Find-ChildElementSchema {
    <#
    .SYNOPSIS
    Return the ConfigurationElementSchema of the child element Name declared by Schema, or $null.
    #>
    [CmdletBinding()]
    param(
        [AllowNull()]
        [object] $Schema,
        [Parameter(Mandatory = $true)]
        [string] $Name
    )
    if ($null -eq $Schema) { return $null }
    foreach ($childSchema in $Schema.ChildElementSchemas) {
        if ($childSchema.Name -eq $Name) { return $childSchema }
    }
    return $null
}

function Get-CollectionItemTags {
    <#
    .SYNOPSIS
    Return the tags of collection items an element with this schema may hold: the collection's add
    element names (";"-separated in the schema) and its remove and clear element names.
    Without a schema: add, remove, clear.
    .OUTPUTS
    [string[]] (empty when the schema declares no collection).
    #>
    [CmdletBinding()]
    param(
        [AllowNull()]
        [object] $Schema
    )
    if ($null -eq $Schema) { return , @('add', 'remove', 'clear') }
    $collection = $Schema.CollectionSchema
    if ($null -eq $collection) { return , @() }
    $tags = New-Object -TypeName 'System.Collections.Generic.List[string]'
    foreach ($name in ([string]$collection.AddElementNames).Split(';')) {
        if ($name.Length -gt 0) { $tags.Add($name) }
    }
    foreach ($name in @([string]$collection.RemoveElementName, [string]$collection.ClearElementName)) {
        if ($name.Length -gt 0) { $tags.Add($name) }
    }
    return , $tags.ToArray()
}

function ConvertTo-ConfigXmlJson {
    <#
    .SYNOPSIS
    Return the ELEMENT form of an XML element of applicationHost.config (used under <location>,
    where everything written is explicit by definition). remove and clear items are reported as
    items with those tags.
    .PARAMETER Node
    A System.Xml.XmlElement. Read through get_* methods: PowerShell's XML adapter would otherwise
    answer .Name or .Attributes with an XML attribute or child of that name.
    .PARAMETER Schema
    The element's ConfigurationElementSchema from MWA, to tell child elements from collection
    items; $null: add/remove/clear are items, anything else a child element.
    .PARAMETER DigestKey
    Key of the secret digests (ConvertTo-SecretDigest), from Get-HostState's call.
    .PARAMETER InEnvironmentVariables
    The element is an item of an environmentVariables collection (its value is a secret).
    .OUTPUTS
    Ordered dictionary {attributes, children, items}; secret values as ConvertTo-SecretDigest.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [System.Xml.XmlElement] $Node,
        [AllowNull()]
        [object] $Schema,
        [Parameter(Mandatory = $true)]
        [byte[]] $DigestKey,
        [bool] $InEnvironmentVariables = $false
    )
    $json = New-ConfigElementJson
    foreach ($attribute in $Node.get_Attributes()) {
        $name = $attribute.get_LocalName()
        $text = $attribute.get_Value()
        if (Test-SecretConfigAttribute -Name $name -InEnvironmentVariables $InEnvironmentVariables) {
            $text = ConvertTo-SecretDigest -Value $text -Key $DigestKey
        }
        $json['attributes'][$name] = $text
    }
    $itemTags = Get-CollectionItemTags -Schema $Schema
    $itemsAreSecret = $Node.get_LocalName() -eq 'environmentVariables'
    foreach ($child in $Node.get_ChildNodes()) {
        if ($child.get_NodeType() -ne [System.Xml.XmlNodeType]::Element) { continue }
        $tag = $child.get_LocalName()
        if ($itemTags -contains $tag) {
            $itemSchema = $null
            if ($null -ne $Schema -and $null -ne $Schema.CollectionSchema -and (([string]$Schema.CollectionSchema.AddElementNames).Split(';') -contains $tag)) {
                $itemSchema = $Schema.CollectionSchema.GetAddElementSchema($tag)
            }
            $itemJson = ConvertTo-ConfigXmlJson -Node $child -Schema $itemSchema -DigestKey $DigestKey -InEnvironmentVariables $itemsAreSecret
            Add-ConfigElementJsonItem -Element $json -Tag $tag -Item $itemJson
        } else {
            $childSchema = Find-ChildElementSchema -Schema $Schema -Name $tag
            $json['children'][$tag] = ConvertTo-ConfigXmlJson -Node $child -Schema $childSchema -DigestKey $DigestKey
        }
    }
    return $json
}

function Get-IisReportedSections {
    <#
    .SYNOPSIS
    Return the section paths Get-HostState reports (contract): proxy only when ARR is installed and
    rewrite/allowedServerVariables only when URL Rewrite is (their schema is registered only then).
    .PARAMETER Extensions
    The result of Get-IisExtensionState.
    .OUTPUTS
    [string[]]
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [System.Collections.IDictionary] $Extensions
    )
    $sections = New-Object -TypeName 'System.Collections.Generic.List[string]'
    $sections.Add('system.applicationHost/applicationPools')
    $sections.Add('system.applicationHost/sites')
    $sections.Add('system.webServer/globalModules')
    if ($Extensions['ARR']['installed']) { $sections.Add('system.webServer/proxy') }
    if ($Extensions['UrlRewrite']['installed']) { $sections.Add('system.webServer/rewrite/allowedServerVariables') }
    $sections.Add('system.webServer/security/requestFiltering')
    $sections.Add('system.webServer/security/authentication/anonymousAuthentication')
    return , $sections.ToArray()
}

function Get-IisGlobalModuleNames {
    <#
    .SYNOPSIS
    Return the names of the global modules registered in system.webServer/globalModules.
    .PARAMETER Configuration
    From ServerManager.GetApplicationHostConfiguration().
    .OUTPUTS
    [string[]]
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [object] $Configuration
    )
    $names = New-Object -TypeName 'System.Collections.Generic.List[string]'
    foreach ($module in $Configuration.GetSection('system.webServer/globalModules').GetCollection()) {
        $names.Add([string]$module.GetAttributeValue('name'))
    }
    return , $names.ToArray()
}

function Get-IisConfigState {
    <#
    .SYNOPSIS
    Return the configuration part of Get-HostState's "iis": {"sections": {SECTION_PATH: ELEMENT}}
    for the reported sections at server level, and {"locations": {LOCATION_PATH: {SECTION_PATH:
    ELEMENT}}} for those written under <location path="..."> in applicationHost.config (path="" is
    server level and is left out, and so are locations without a reported section).
    .PARAMETER Configuration
    From ServerManager.GetApplicationHostConfiguration().
    .PARAMETER Extensions
    The result of Get-IisExtensionState (it decides which sections are reported).
    .PARAMETER DigestKey
    Key of the secret digests (ConvertTo-SecretDigest), from Get-HostState's call.
    .PARAMETER Function
    Name of the calling function, for error messages.
    .OUTPUTS
    Ordered dictionary {sections, locations}. Throws naming the section when MWA cannot read it, or
    when applicationHost.config cannot be read as XML.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [object] $Configuration,
        [Parameter(Mandatory = $true)]
        [System.Collections.IDictionary] $Extensions,
        [Parameter(Mandatory = $true)]
        [byte[]] $DigestKey,
        [string] $Function = 'remote call'
    )
    $reported = Get-IisReportedSections -Extensions $Extensions
    $sections = [ordered]@{}
    foreach ($path in $reported) {
        try {
            $section = $Configuration.GetSection($path)
        } catch {
            throw ('{0}: cannot read section {1} of applicationHost.config: {2}' -f $Function, $path, $_.Exception.Message)
        }
        $sections[$path] = ConvertTo-ConfigElementJson -Element $section -DigestKey $DigestKey
    }
    try {
        $document = Read-ApplicationHostXml
    } catch {
        throw ('{0}: cannot read {1}: {2}' -f $Function, (Get-ApplicationHostConfigPath), $_.Exception.Message)
    }
    $locations = [ordered]@{}
    foreach ($location in $document.get_DocumentElement().get_ChildNodes()) {
        if ($location.get_NodeType() -ne [System.Xml.XmlNodeType]::Element -or $location.get_LocalName() -ne 'location') { continue }
        $locationPath = $location.GetAttribute('path')
        if ([string]::IsNullOrEmpty($locationPath)) { continue }
        foreach ($path in $reported) {
            $node = Find-XmlSection -Parent $location -Section $path
            if ($null -eq $node) { continue }
            $schema = $Configuration.GetSection($path).Schema
            if (-not $locations.Contains($locationPath)) { $locations[$locationPath] = [ordered]@{} }
            $locations[$locationPath][$path] = ConvertTo-ConfigXmlJson -Node $node -Schema $schema -DigestKey $DigestKey
        }
    }
    return [ordered]@{ sections = $sections; locations = $locations }
}
