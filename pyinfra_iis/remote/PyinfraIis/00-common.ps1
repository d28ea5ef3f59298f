# PyinfraIis module, part 00: the module header and helpers every function uses.
#
# The module is the concatenation of PyinfraIis/*.ps1 in name order (pyinfra_iis/remote/__init__.py),
# loaded once per worker with New-Module (remote/worker.ps1), so these files are parts of ONE script
# module: variables set here are module-scope ($script:) for every function, and New-Module exports
# every function. Target: Windows PowerShell 5.1 (WebAdministration and IISAdministration do not load
# under PowerShell 7; field notes, IIS).
#
# Every remote function is called as `Verb-Noun -Json '<object>'` (pyinfra_iis/protocol.py): it reads
# its argument with ConvertFrom-CallJson / Get-CallValue -Type, prints ONE line of compressed JSON with
# Write-CallResult, and on failure throws a terminating error whose message says what failed and why
# (the worker turns it into rc 1). Nothing else may reach the pipeline: cast to [void] whatever
# returns a value you do not print.

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
# Progress records would otherwise reach the client as CLIXML noise (field notes, WinRM).
$ProgressPreference = 'SilentlyContinue'

# Depth for ConvertTo-Json: Windows PowerShell 5.1 defaults to 2 and silently flattens deeper
# objects into their type name, which would corrupt facts such as Get-HostState.
$script:CallResultDepth = 20

function ConvertFrom-CallJson {
    <#
    .SYNOPSIS
    Parse the -Json argument of a remote call into a PSCustomObject.
    .PARAMETER Json
    The text of the -Json argument; must be one JSON object ('{}' for no arguments).
    .PARAMETER Function
    Name of the calling function, used in error messages.
    .OUTPUTS
    PSCustomObject (ConvertFrom-Json of Windows PowerShell 5.1 has no -AsHashtable). Read members
    with Get-CallValue: under Set-StrictMode -Version Latest a missing property throws.
    Throws a terminating error when the text is empty, not JSON, or not an object.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [AllowEmptyString()]
        [string] $Json,
        [string] $Function = 'remote call'
    )
    if ([string]::IsNullOrWhiteSpace($Json)) {
        throw ('{0}: the -Json argument is empty; expected a JSON object' -f $Function)
    }
    try {
        $value = ConvertFrom-Json -InputObject $Json
    } catch {
        throw ('{0}: the -Json argument is not valid JSON: {1}' -f $Function, $_.Exception.Message)
    }
    if ($value -isnot [System.Management.Automation.PSCustomObject]) {
        throw ('{0}: the -Json argument must be a JSON object, not {1}' -f $Function, (Get-JsonTypeName -Value $value))
    }
    return $value
}

function Get-JsonTypeName {
    <#
    .SYNOPSIS
    Name the JSON type of a value parsed by ConvertFrom-Json (for error messages).
    #>
    [CmdletBinding()]
    param(
        [AllowNull()]
        [object] $Value
    )
    if ($null -eq $Value) { return 'null' }
    if ($Value -is [string]) { return 'a string' }
    if ($Value -is [bool]) { return 'a boolean' }
    if ($Value -is [array]) { return 'an array' }
    if ($Value -is [System.Management.Automation.PSCustomObject]) { return 'an object' }
    return 'a number'
}

function Get-CallValue {
    <#
    .SYNOPSIS
    Read one member of a parsed -Json argument (or of a nested object of it), checking its JSON type.
    .PARAMETER Call
    The object from ConvertFrom-CallJson, or a nested JSON object of it.
    .PARAMETER Name
    Member name (JSON keys are case-sensitive in the contract; PowerShell matches case-insensitively).
    .PARAMETER Type
    'any' (default, no check), 'string', 'boolean', 'object', 'array', 'strings' (an array of
    non-empty strings, returned as [string[]]) or 'integer' (a whole number between -Minimum and
    -Maximum, returned as [long]).
    .PARAMETER Default
    Returned when the member is absent or null (default $null; 'array' and 'strings' give an empty
    array instead, never $null).
    .PARAMETER Required
    Throw when the member is absent or null instead of returning Default; a required 'string' must
    also not be empty.
    .PARAMETER Minimum
    Smallest accepted 'integer' (default 0).
    .PARAMETER Maximum
    Largest accepted 'integer' (default [long]::MaxValue).
    .PARAMETER Function
    Name of the calling function, used in error messages.
    .OUTPUTS
    The value (an array as ONE object: assign it, `$list = Get-CallValue ...`). Throws naming
    Function and Name when the member is required but absent, of another type, or out of range.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [psobject] $Call,
        [Parameter(Mandatory = $true)]
        [string] $Name,
        [ValidateSet('any', 'string', 'boolean', 'object', 'array', 'strings', 'integer')]
        [string] $Type = 'any',
        # Untyped: a [string] parameter would turn $null into ''.
        [AllowNull()]
        [object] $Default = $null,
        [switch] $Required,
        [long] $Minimum = 0,
        [long] $Maximum = [long]::MaxValue,
        [string] $Function = 'remote call'
    )
    $property = $Call.PSObject.Properties[$Name]
    if ($null -eq $property -or $null -eq $property.Value) {
        if ($Required) {
            throw ('{0}: the -Json argument needs "{1}"' -f $Function, $Name)
        }
        if ($Type -eq 'array') { return , @() }
        if ($Type -eq 'strings') { return , [string[]]@() }
        return $Default
    }
    $value = $property.Value
    $valid = switch ($Type) {
        'any' { $true }
        'string' { $value -is [string] }
        'boolean' { $value -is [bool] }
        'object' { $value -is [System.Management.Automation.PSCustomObject] }
        'array' { $value -is [array] }
        'strings' { $value -is [array] }
        'integer' {
            ($value -is [int]) -or ($value -is [long]) -or
            (($value -is [decimal] -or $value -is [double]) -and [math]::Truncate($value) -eq $value)
        }
    }
    if (-not $valid) {
        $expected = @{ string = 'a string'; boolean = 'true or false'; object = 'a JSON object'; array = 'a JSON array'; strings = 'a JSON array'; integer = 'a whole number' }
        throw ('{0}: "{1}" must be {2}, got {3}' -f $Function, $Name, $expected[$Type], (Get-JsonTypeName -Value $value))
    }
    if ($Type -eq 'string' -and $Required -and $value.Length -eq 0) {
        throw ('{0}: "{1}" must not be empty' -f $Function, $Name)
    }
    if ($Type -eq 'integer') {
        $number = [long]$value
        if ($number -lt $Minimum -or $number -gt $Maximum) {
            throw ('{0}: "{1}" must be between {2} and {3}, got {4}' -f $Function, $Name, $Minimum, $Maximum, $number)
        }
        return $number
    }
    if ($Type -eq 'strings') {
        foreach ($element in $value) {
            if ($element -isnot [string] -or $element.Length -eq 0) {
                throw ('{0}: "{1}" must hold non-empty strings, got {2}' -f $Function, $Name, (Get-JsonTypeName -Value $element))
            }
        }
        return , [string[]]$value
    }
    # The comma keeps an array an array (PowerShell would unroll it on return).
    return , $value
}

function Get-CallMemberNames {
    <#
    .SYNOPSIS
    Return the member names of a JSON object in document order (ConvertFrom-Json keeps it).
    .PARAMETER Object
    A PSCustomObject from ConvertFrom-Json, or $null.
    .OUTPUTS
    [string[]], empty for $null.
    #>
    [CmdletBinding()]
    param(
        [AllowNull()]
        [object] $Object
    )
    $names = New-Object -TypeName 'System.Collections.Generic.List[string]'
    if ($null -ne $Object) {
        foreach ($property in $Object.PSObject.Properties) {
            $names.Add($property.Name)
        }
    }
    return , $names.ToArray()
}

function Write-CallResult {
    <#
    .SYNOPSIS
    Print the result of a remote call as ONE line of compressed JSON on stdout.
    .PARAMETER InputObject
    A hashtable / [ordered] dictionary / PSCustomObject (nested up to $script:CallResultDepth = 20
    levels); $null prints null.
    .NOTES
    Out-String (used by the worker) neither wraps nor truncates plain strings, whatever -Width
    says (PowerShell issues #6971, #25284), so long results stay on one line.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [AllowNull()]
        [object] $InputObject
    )
    # A function that reaches its result has succeeded, whatever native programs it ran and
    # handled on the way: the worker reads a non-zero $LASTEXITCODE as the step's exit code.
    $global:LASTEXITCODE = 0
    if ($null -eq $InputObject) {
        Write-Output -InputObject 'null'
        return
    }
    $json = ConvertTo-Json -InputObject $InputObject -Depth $script:CallResultDepth -Compress
    Write-Output -InputObject $json
}

function Get-Sha256Hex {
    <#
    .SYNOPSIS
    Return the SHA-256 of bytes, or of the rest of a stream, as lowercase hex without separators
    (the form SHA-256 digests take in the protocol).
    .PARAMETER InputObject
    [byte[]], or a readable System.IO.Stream (read to its end, not closed).
    .OUTPUTS
    [string], 64 hex digits.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [AllowEmptyCollection()]
        [object] $InputObject
    )
    $sha = [System.Security.Cryptography.SHA256]::Create()
    try {
        return ([System.BitConverter]::ToString($sha.ComputeHash($InputObject)) -replace '-', '').ToLowerInvariant()
    } finally {
        $sha.Dispose()
    }
}

function Read-StreamBytes {
    <#
    .SYNOPSIS
    Read up to Count bytes from a stream: fewer only at its end.
    .PARAMETER Stream
    A readable System.IO.Stream (not closed).
    .PARAMETER Count
    Most bytes to read.
    .OUTPUTS
    [byte[]] (empty at the end of the stream).
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [System.IO.Stream] $Stream,
        [Parameter(Mandatory = $true)]
        [int] $Count
    )
    $buffer = New-Object -TypeName 'byte[]' -ArgumentList $Count
    $total = 0
    while ($total -lt $Count) {
        $read = $Stream.Read($buffer, $total, $Count - $total)
        if ($read -le 0) { break }
        $total += $read
    }
    if ($total -eq $Count) { return , $buffer }
    $head = New-Object -TypeName 'byte[]' -ArgumentList $total
    [System.Array]::Copy($buffer, $head, $total)
    return , $head
}

function ConvertTo-SecretDigest {
    <#
    .SYNOPSIS
    Return the digest facts report instead of a secret value.
    .DESCRIPTION
    "hmac-sha256:" + hex(HMAC-SHA256(Key, UTF-8(Value))), exactly as
    pyinfra_iis.protocol.secret_digest computes it, so operations can compare without the value.
    The key is the one the controller sent Get-HostState (random per run, shown masked in its
    logs), so a digest printed in a verbose log cannot be used to guess a weak value offline.
    .PARAMETER Value
    The secret value.
    .PARAMETER Key
    [byte[]] digest key (ConvertFrom-DigestKey).
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [AllowEmptyString()]
        [string] $Value,
        [Parameter(Mandatory = $true)]
        [byte[]] $Key
    )
    $hmac = New-Object -TypeName 'System.Security.Cryptography.HMACSHA256' -ArgumentList (, $Key)
    try {
        $hash = $hmac.ComputeHash([System.Text.Encoding]::UTF8.GetBytes($Value))
        return 'hmac-sha256:' + ([System.BitConverter]::ToString($hash) -replace '-', '').ToLowerInvariant()
    } finally {
        $hmac.Dispose()
    }
}

function ConvertFrom-DigestKey {
    <#
    .SYNOPSIS
    Decode and check the "digest_key" member of a call: base64 of at least 16 bytes (the
    controller sends 32 random bytes).
    .PARAMETER Text
    The member's value.
    .PARAMETER Function
    Name of the calling function, used in error messages.
    .OUTPUTS
    [byte[]]. Throws naming the function when the value is missing, not base64 or too short; the
    message never repeats the value.
    #>
    [CmdletBinding()]
    param(
        [AllowNull()]
        [AllowEmptyString()]
        [string] $Text,
        [string] $Function = 'remote call'
    )
    $key = $null
    try {
        if (-not [string]::IsNullOrEmpty($Text)) { $key = [System.Convert]::FromBase64String($Text) }
    } catch {
        $key = $null
    }
    if ($null -eq $key -or $key.Length -lt 16) {
        throw ("{0}: 'digest_key' must be base64 of at least 16 bytes" -f $Function)
    }
    return , $key
}

function Enable-ModernTls {
    <#
    .SYNOPSIS
    Allow TLS 1.2 for HttpWebRequest and Invoke-WebRequest (MSI downloads, health checks): Windows
    PowerShell 5.1 on .NET Framework 4.x may offer only SSL 3 / TLS 1.0 by default [R]; the
    existing protocols stay allowed.
    .OUTPUTS
    Nothing (sets [System.Net.ServicePointManager]::SecurityProtocol for the worker's process).
    #>
    [CmdletBinding()]
    param()
    [System.Net.ServicePointManager]::SecurityProtocol = [System.Net.ServicePointManager]::SecurityProtocol -bor [System.Net.SecurityProtocolType]::Tls12
}
