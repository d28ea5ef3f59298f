# PyinfraIis module, part 50: IIS configuration (applicationHost.config) through
# Microsoft.Web.Administration (MWA): loading ServerManager, values as IIS writes them, the JSON form
# of configuration elements that Get-HostState reports, and Set-IisConfig.
#
# Contract: docs/remote-functions.md, "Read: Get-HostState" (ELEMENT) and "Change: IIS configuration".
# Microsoft docs relied on [V]:
# - ServerManager: "Updates made to configuration objects must be explicitly written to the
#   configuration system by using the CommitChanges method"
#   https://learn.microsoft.com/dotnet/api/microsoft.web.administration.servermanager
# - Configuration.GetSection(String) / GetSection(String, String) (section and location paths)
#   https://learn.microsoft.com/dotnet/api/microsoft.web.administration.configuration.getsection
# - ConfigurationElementCollection (CreateElement, Add, Remove), ConfigurationElement (Attributes,
#   ChildElements, GetChildElement, GetCollection, SetAttributeValue, Schema),
#   ConfigurationAttribute (Value, IsInheritedFromDefaultValue, Schema)
#   https://learn.microsoft.com/dotnet/api/microsoft.web.administration.configurationelementcollection
# - ConfigurationEnumValue.Value is a long
#   https://learn.microsoft.com/dotnet/api/microsoft.web.administration.configurationenumvalue.value
# Inferences [I], not checked on Windows:
# - ConfigurationAttribute.Value holds enum and flags attributes as their numeric value, bool as
#   [bool], timeSpan as [TimeSpan]; values are converted both ways with the attribute's schema here,
#   so the code also accepts a string where a number was expected.
# - At server level the sections we report are defined only in applicationHost.config, so "not
#   IsInheritedFromDefaultValue" means "written in the file". Under a <location> the merged view also
#   holds what the server level sets, so explicit content of a location is read from the XML of
#   applicationHost.config instead (with MWA's schema to tell child elements from collection items).
# - Values of attributes whose schema says encrypted="true" (password) come back decrypted from MWA.

# --- Loading ServerManager ---------------------------------------------------------------------------

function Get-InetsrvPath {
    <#
    .SYNOPSIS
    Return %windir%\System32\inetsrv, where IIS keeps its binaries and its configuration.
    #>
    [CmdletBinding()]
    param()
    return [System.IO.Path]::Combine([string]$env:windir, 'System32', 'inetsrv')
}

function Get-ApplicationHostConfigPath {
    <#
    .SYNOPSIS
    Return the path of applicationHost.config (%windir%\System32\inetsrv\config). Shared
    configuration (redirection.config) is not supported.
    #>
    [CmdletBinding()]
    param()
    return [System.IO.Path]::Combine((Get-InetsrvPath), 'config', 'applicationHost.config')
}

function Test-IisInstalled {
    <#
    .SYNOPSIS
    Tell whether Microsoft.Web.Administration.dll exists (installed with the Web-Server feature).
    .OUTPUTS
    [bool]
    #>
    [CmdletBinding()]
    param()
    return [System.IO.File]::Exists((Join-Path -Path (Get-InetsrvPath) -ChildPath 'Microsoft.Web.Administration.dll'))
}

function New-IisServerManager {
    <#
    .SYNOPSIS
    Load %windir%\System32\inetsrv\Microsoft.Web.Administration.dll once and return a new
    ServerManager (dispose it in a finally block).
    .PARAMETER Function
    Name of the calling function, for error messages.
    .OUTPUTS
    Microsoft.Web.Administration.ServerManager. Throws when IIS is not installed.
    #>
    [CmdletBinding()]
    param(
        [string] $Function = 'remote call'
    )
    $assembly = Join-Path -Path (Get-InetsrvPath) -ChildPath 'Microsoft.Web.Administration.dll'
    if (-not [System.IO.File]::Exists($assembly)) {
        throw ('{0}: IIS is not installed ({1} is missing): install the Web-Server feature first' -f $Function, $assembly)
    }
    if ($null -eq ('Microsoft.Web.Administration.ServerManager' -as [type])) {
        Add-Type -Path $assembly
    }
    return New-Object -TypeName 'Microsoft.Web.Administration.ServerManager'
}

function Get-IisNamedObject {
    <#
    .SYNOPSIS
    Return the site or application pool called Name from a ServerManager.
    .PARAMETER Manager
    A Microsoft.Web.Administration.ServerManager (New-IisServerManager).
    .PARAMETER Kind
    "site" (ServerManager.Sites) or "app pool" (ServerManager.ApplicationPools).
    .PARAMETER Name
    The site's or pool's name (IIS compares names case-insensitively).
    .PARAMETER Function
    Name of the calling function, for error messages.
    .OUTPUTS
    Microsoft.Web.Administration.Site or ApplicationPool. Throws '<Function>: <Kind> "<Name>" does
    not exist'.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [object] $Manager,
        [Parameter(Mandatory = $true)]
        [ValidateSet('site', 'app pool')]
        [string] $Kind,
        [Parameter(Mandatory = $true)]
        [string] $Name,
        [string] $Function = 'remote call'
    )
    if ($Kind -eq 'site') {
        $object = $Manager.Sites[$Name]
    } else {
        $object = $Manager.ApplicationPools[$Name]
    }
    if ($null -eq $object) {
        throw ('{0}: {1} "{2}" does not exist' -f $Function, $Kind, $Name)
    }
    return , $object
}

# --- Values as IIS writes them ----------------------------------------------------------------------

function Format-ConfigValue {
    <#
    .SYNOPSIS
    Return a configuration value as IIS writes it in applicationHost.config.
    .PARAMETER Schema
    The attribute's Microsoft.Web.Administration.ConfigurationAttributeSchema ($null: the value is
    written as a string).
    .PARAMETER Value
    The value as MWA holds it.
    .OUTPUTS
    [string]: bool "true"/"false"; enum its <enum name>; flags the names of the set bits joined with
    ", " in schema order (IIS writes logEventOnRecycle="Time, Requests"); timeSpan in the invariant
    "c" form ("1.05:00:00", "00:00:00"); numbers in the invariant culture; $null as "".
    #>
    [CmdletBinding()]
    param(
        [AllowNull()]
        [object] $Schema,
        [AllowNull()]
        [object] $Value
    )
    if ($null -eq $Value) { return '' }
    if ($Value -is [string]) { return $Value }
    if ($Value -is [bool]) {
        if ($Value) { return 'true' }
        return 'false'
    }
    # A binding's certificateHash comes back as bytes (MWA's Binding.CertificateHash is a byte[]) [I].
    if ($Value -is [byte[]]) { return ([System.BitConverter]::ToString($Value) -replace '-', '') }
    if ($Value -is [System.TimeSpan]) { return $Value.ToString('c', [System.Globalization.CultureInfo]::InvariantCulture) }
    $type = ''
    if ($null -ne $Schema) { $type = [string]$Schema.Type }
    if ($type -eq 'enum') {
        foreach ($enumValue in $Schema.GetEnumValues()) {
            if ([long]$enumValue.Value -eq [long]$Value) { return [string]$enumValue.Name }
        }
    } elseif ($type -eq 'flags') {
        $number = [long]$Value
        $names = New-Object -TypeName 'System.Collections.Generic.List[string]'
        $zeroName = $null
        foreach ($enumValue in $Schema.GetEnumValues()) {
            $bits = [long]$enumValue.Value
            if ($bits -eq 0) {
                $zeroName = [string]$enumValue.Name
            } elseif (($number -band $bits) -eq $bits) {
                $names.Add([string]$enumValue.Name)
            }
        }
        if ($names.Count -gt 0) { return [string]::Join(', ', $names.ToArray()) }
        if ($number -eq 0 -and $null -ne $zeroName) { return $zeroName }
    }
    return [System.Convert]::ToString($Value, [System.Globalization.CultureInfo]::InvariantCulture)
}

function ConvertFrom-ConfigValue {
    <#
    .SYNOPSIS
    Convert a value string of the contract ("true", "AlwaysRunning", "00:00:00", "1000") to the
    typed value MWA stores, using the attribute's schema.
    .PARAMETER Schema
    ConfigurationAttributeSchema, or $null for an attribute the schema does not declare (kept as a
    string).
    .PARAMETER Text
    The value as written in applicationHost.config.
    .PARAMETER Where
    Description of the attribute for error messages (section/path@name).
    .PARAMETER Secret
    The value is secret: error messages never show it.
    .OUTPUTS
    [bool], [int] (enum, flags), [uint32], [int], [long], [TimeSpan] or [string].
    Throws when the text does not fit the attribute's type, naming the accepted values.
    #>
    [CmdletBinding()]
    param(
        [AllowNull()]
        [object] $Schema,
        [Parameter(Mandatory = $true)]
        [AllowEmptyString()]
        [string] $Text,
        [Parameter(Mandatory = $true)]
        [string] $Where,
        [bool] $Secret = $false
    )
    if ($null -eq $Schema) { return $Text }
    $type = [string]$Schema.Type
    $shown = '"' + $Text + '"'
    if ($Secret) { $shown = 'the given (secret) value' }
    $invariant = [System.Globalization.CultureInfo]::InvariantCulture
    if ($type -eq 'bool') {
        if ($Text -eq 'true') { return $true }
        if ($Text -eq 'false') { return $false }
        throw ('{0} is a bool: expected "true" or "false", got {1}' -f $Where, $shown)
    }
    if ($type -eq 'enum' -or $type -eq 'flags') {
        $known = @{}
        $names = New-Object -TypeName 'System.Collections.Generic.List[string]'
        foreach ($enumValue in $Schema.GetEnumValues()) {
            $known[[string]$enumValue.Name] = [long]$enumValue.Value
            $names.Add([string]$enumValue.Name)
        }
        $parts = @($Text)
        if ($type -eq 'flags') { $parts = $Text.Split(',') }
        $number = [long]0
        foreach ($part in $parts) {
            $name = $part.Trim()
            if ($type -eq 'flags' -and $name.Length -eq 0) { continue }
            # Hashtable keys compare case-insensitively, as IIS compares enum names.
            if (-not $known.ContainsKey($name)) {
                throw ('{0} is {1}: expected {2} of {3}; got {4}' -f $Where, $type, $(if ($type -eq 'flags') { 'a comma-separated list' } else { 'one' }), [string]::Join(', ', $names.ToArray()), $shown)
            }
            $number = $number -bor $known[$name]
        }
        return [int]$number
    }
    try {
        if ($type -eq 'uint') { return [uint32]::Parse($Text, [System.Globalization.NumberStyles]::None, $invariant) }
        if ($type -eq 'int') { return [int]::Parse($Text, [System.Globalization.NumberStyles]::AllowLeadingSign, $invariant) }
        if ($type -eq 'int64') { return [long]::Parse($Text, [System.Globalization.NumberStyles]::AllowLeadingSign, $invariant) }
        if ($type -eq 'timeSpan') { return [System.TimeSpan]::Parse($Text, $invariant) }
    } catch {
        throw ('{0} is a {1}: {2} is not a valid {1}' -f $Where, $type, $shown)
    }
    return $Text
}

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

function Test-SecretConfigAttribute {
    <#
    .SYNOPSIS
    Tell whether an attribute holds a secret: every attribute named password, and the value of an
    item of an environmentVariables collection (contract, "Secret-bearing values").
    .PARAMETER Name
    Attribute name.
    .PARAMETER InEnvironmentVariables
    The attribute belongs to an item of an environmentVariables collection.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Name,
        [bool] $InEnvironmentVariables = $false
    )
    return ($Name -eq 'password') -or ($InEnvironmentVariables -and $Name -eq 'value')
}

function Find-ConfigAttribute {
    <#
    .SYNOPSIS
    Return the ConfigurationAttribute called Name of an element, or $null when its schema has none.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [object] $Element,
        [Parameter(Mandatory = $true)]
        [string] $Name
    )
    foreach ($attribute in $Element.Attributes) {
        if ($attribute.Name -ceq $Name) { return $attribute }
    }
    foreach ($attribute in $Element.Attributes) {
        if ($attribute.Name -eq $Name) { return $attribute }
    }
    return $null
}

# --- Elements as JSON (Get-HostState) ------------------------------------------------------------------

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
    .PARAMETER InEnvironmentVariables
    The element is an item of an environmentVariables collection (its value is a secret).
    .OUTPUTS
    Ordered dictionary {attributes, children, items}; secret values as ConvertTo-SecretDigest.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [object] $Element,
        [bool] $InEnvironmentVariables = $false
    )
    $json = New-ConfigElementJson
    foreach ($attribute in $Element.Attributes) {
        if ($attribute.IsInheritedFromDefaultValue) { continue }
        $text = Format-ConfigValue -Schema $attribute.Schema -Value $attribute.Value
        if (Test-SecretConfigAttribute -Name $attribute.Name -InEnvironmentVariables $InEnvironmentVariables) {
            $text = ConvertTo-SecretDigest -Value $text
        }
        $json['attributes'][[string]$attribute.Name] = $text
    }
    foreach ($child in $Element.ChildElements) {
        $childJson = ConvertTo-ConfigElementJson -Element $child
        # ChildElements lists every child the schema declares, written in the file or not.
        if (-not (Test-ConfigElementJsonEmpty -Element $childJson)) {
            $json['children'][[string]$child.ElementTagName] = $childJson
        }
    }
    if ($null -ne $Element.Schema -and $null -ne $Element.Schema.CollectionSchema) {
        $itemsAreSecret = [string]$Element.ElementTagName -eq 'environmentVariables'
        foreach ($item in $Element.GetCollection()) {
            $itemJson = ConvertTo-ConfigElementJson -Element $item -InEnvironmentVariables $itemsAreSecret
            $entry = [ordered]@{ tag = [string]$item.ElementTagName }
            foreach ($key in @($itemJson.Keys)) { $entry[$key] = $itemJson[$key] }
            [void]$json['items'].Add($entry)
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
    .PARAMETER InEnvironmentVariables
    The element is an item of an environmentVariables collection (its value is a secret).
    .OUTPUTS
    Ordered dictionary {attributes, children, items}.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [System.Xml.XmlElement] $Node,
        [AllowNull()]
        [object] $Schema,
        [bool] $InEnvironmentVariables = $false
    )
    $json = New-ConfigElementJson
    foreach ($attribute in $Node.get_Attributes()) {
        $name = $attribute.get_LocalName()
        $text = $attribute.get_Value()
        if (Test-SecretConfigAttribute -Name $name -InEnvironmentVariables $InEnvironmentVariables) {
            $text = ConvertTo-SecretDigest -Value $text
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
            $itemJson = ConvertTo-ConfigXmlJson -Node $child -Schema $itemSchema -InEnvironmentVariables $itemsAreSecret
            $entry = [ordered]@{ tag = $tag }
            foreach ($key in @($itemJson.Keys)) { $entry[$key] = $itemJson[$key] }
            [void]$json['items'].Add($entry)
        } else {
            $childSchema = Find-ChildElementSchema -Schema $Schema -Name $tag
            $json['children'][$tag] = ConvertTo-ConfigXmlJson -Node $child -Schema $childSchema
        }
    }
    return $json
}

function Find-XmlChildElement {
    <#
    .SYNOPSIS
    Return the first child element of an XML node with the given tag, or $null.
    .NOTES
    XML nodes are enumerable (their children): functions here return them with the unary comma so
    that PowerShell does not unroll them.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [System.Xml.XmlNode] $Parent,
        [Parameter(Mandatory = $true)]
        [string] $Tag
    )
    foreach ($child in $Parent.get_ChildNodes()) {
        if ($child.get_NodeType() -eq [System.Xml.XmlNodeType]::Element -and $child.get_LocalName() -ceq $Tag) {
            return , $child
        }
    }
    return $null
}

function Find-XmlSection {
    <#
    .SYNOPSIS
    Return the XML element of a section (e.g. system.webServer/security/requestFiltering) under a
    <configuration> or <location> element, or $null.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [System.Xml.XmlNode] $Parent,
        [Parameter(Mandatory = $true)]
        [string] $Section
    )
    $node = $Parent
    foreach ($part in $Section.Split('/')) {
        $node = Find-XmlChildElement -Parent $node -Tag $part
        if ($null -eq $node) { return $null }
    }
    return , $node
}

function Read-ApplicationHostXml {
    <#
    .SYNOPSIS
    Load applicationHost.config as a System.Xml.XmlDocument (read only; changes go through MWA).
    #>
    [CmdletBinding()]
    param()
    $document = New-Object -TypeName 'System.Xml.XmlDocument'
    $document.Load((Get-ApplicationHostConfigPath))
    return , $document
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

function Get-IisServerSections {
    <#
    .SYNOPSIS
    Return {SECTION_PATH: ELEMENT} for the reported sections at server level.
    .OUTPUTS
    Ordered dictionary. Throws naming the section when MWA cannot read it.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [object] $Configuration,
        [Parameter(Mandatory = $true)]
        [System.Collections.IDictionary] $Extensions,
        [string] $Function = 'remote call'
    )
    $sections = [ordered]@{}
    foreach ($path in (Get-IisReportedSections -Extensions $Extensions)) {
        try {
            $section = $Configuration.GetSection($path)
        } catch {
            throw ('{0}: cannot read section {1} of applicationHost.config: {2}' -f $Function, $path, $_.Exception.Message)
        }
        $sections[$path] = ConvertTo-ConfigElementJson -Element $section
    }
    return $sections
}

function Get-IisLocationSections {
    <#
    .SYNOPSIS
    Return {LOCATION_PATH: {SECTION_PATH: ELEMENT}} for the reported sections written under
    <location path="..."> in applicationHost.config (path="" is server level and is left out).
    .OUTPUTS
    Ordered dictionary; locations without a reported section are left out.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [object] $Configuration,
        [Parameter(Mandatory = $true)]
        [System.Collections.IDictionary] $Extensions,
        [string] $Function = 'remote call'
    )
    $sections = Get-IisReportedSections -Extensions $Extensions
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
        foreach ($path in $sections) {
            $node = Find-XmlSection -Parent $location -Section $path
            if ($null -eq $node) { continue }
            $schema = $Configuration.GetSection($path).Schema
            if (-not $locations.Contains($locationPath)) { $locations[$locationPath] = [ordered]@{} }
            $locations[$locationPath][$path] = ConvertTo-ConfigXmlJson -Node $node -Schema $schema
        }
    }
    return $locations
}

# --- Set-IisConfig -------------------------------------------------------------------------------------

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
        [System.Management.Automation.PSCustomObject] $Key
    )
    $pairs = New-Object -TypeName 'System.Collections.Generic.List[string]'
    foreach ($property in $Key.PSObject.Properties) {
        $pairs.Add(('{0}={1}' -f $property.Name, $property.Value))
    }
    return '{0}[{1}]' -f $Tag, [string]::Join(',', $pairs.ToArray())
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
        [System.Management.Automation.PSCustomObject] $Key
    )
    foreach ($item in $Collection) {
        if ([string]$item.ElementTagName -ne $Tag) { continue }
        $isMatch = $true
        foreach ($property in $Key.PSObject.Properties) {
            $attribute = Find-ConfigAttribute -Element $item -Name $property.Name
            if ($null -eq $attribute) { $isMatch = $false; break }
            $text = Format-ConfigValue -Schema $attribute.Schema -Value $attribute.Value
            if (-not [string]::Equals($text, [string]$property.Value, [System.StringComparison]::OrdinalIgnoreCase)) {
                $isMatch = $false
                break
            }
        }
        if ($isMatch) { return , $item }
    }
    return $null
}

function Find-XmlConfigItem {
    <#
    .SYNOPSIS
    The XML twin of Find-ConfigItem: the child element with the tag whose attributes equal Key
    (case-insensitively), or $null. Used to tell what a <location> writes explicitly.
    #>
    [CmdletBinding()]
    param(
        [AllowNull()]
        [System.Xml.XmlNode] $Parent,
        [Parameter(Mandatory = $true)]
        [string] $Tag,
        [Parameter(Mandatory = $true)]
        [System.Management.Automation.PSCustomObject] $Key
    )
    if ($null -eq $Parent) { return $null }
    foreach ($child in $Parent.get_ChildNodes()) {
        if ($child.get_NodeType() -ne [System.Xml.XmlNodeType]::Element -or $child.get_LocalName() -cne $Tag) { continue }
        $isMatch = $true
        foreach ($property in $Key.PSObject.Properties) {
            if (-not $child.HasAttribute($property.Name) -or
                -not [string]::Equals($child.GetAttribute($property.Name), [string]$property.Value, [System.StringComparison]::OrdinalIgnoreCase)) {
                $isMatch = $false
                break
            }
        }
        if ($isMatch) { return , $child }
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
        [System.Management.Automation.PSCustomObject] $Edit,
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
