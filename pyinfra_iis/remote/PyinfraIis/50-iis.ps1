# PyinfraIis module, part 50: Microsoft.Web.Administration (MWA) for parts 51 (the configuration
# Get-HostState reports), 52 (Set-IisConfig) and 60 (runtime state): ServerManager, sites and pools
# by name, values as IIS writes them, applicationHost.config as XML.
#
# Microsoft docs relied on [V]:
# - ServerManager: "Updates made to configuration objects must be explicitly written to the
#   configuration system by using the CommitChanges method"
#   https://learn.microsoft.com/dotnet/api/microsoft.web.administration.servermanager
# - ConfigurationAttribute (Value, IsInheritedFromDefaultValue, Schema)
#   https://learn.microsoft.com/dotnet/api/microsoft.web.administration.configurationelementcollection
# - ConfigurationEnumValue.Value is a long
#   https://learn.microsoft.com/dotnet/api/microsoft.web.administration.configurationenumvalue.value
# Inferences [I], not checked on Windows:
# - ConfigurationAttribute.Value holds enum and flags attributes as their numeric value, bool as
#   [bool], timeSpan as [TimeSpan]; values are converted both ways with the attribute's schema here,
#   so the code also accepts a string where a number was expected.
# - Values of attributes whose schema says encrypted="true" (password) come back decrypted from MWA.

# --- Loading ServerManager

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

# --- Values as IIS writes them

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

# --- applicationHost.config as XML

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
