# PyinfraIis module, part 00: the module header and the helpers every function uses.
# The module is PyinfraIis/*.ps1 concatenated in name order and loaded once per worker with
# New-Module (remote/worker.ps1): one script module, $script: variables shared, every function
# exported. Target: Windows PowerShell 5.1 on .NET Framework 4.x.
# Every remote function is called `Verb-Noun -Json '<object>'` (pyinfra_iis/protocol.py), prints ONE
# line of JSON with Write-CallResult, or throws a terminating error naming what failed (rc 1).
# Nothing else may reach the pipeline: [void] whatever returns a value that is not printed.

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
# Progress records would reach the client as CLIXML noise.
$ProgressPreference = 'SilentlyContinue'
# Windows PowerShell 5.1's ConvertTo-Json defaults to depth 2 and flattens deeper objects.
$script:CallResultDepth = 20

function ConvertFrom-CallJson {
    # Parse the -Json argument into an object; throws naming Function when it is not one.
    # Docs: https://learn.microsoft.com/powershell/module/microsoft.powershell.utility/convertfrom-json?view=powershell-5.1
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [AllowEmptyString()] [string] $Json, [string] $Function = 'remote call')
    if ([string]::IsNullOrWhiteSpace($Json)) { throw ('{0}: the -Json argument is empty; expected a JSON object' -f $Function) }
    try { $value = ConvertFrom-Json -InputObject $Json } catch {
        # 5.1's JavaScriptSerializer appends the WHOLE input to its message ("... (index): <input>"): cut it off,
        # the input may carry a secret.
        throw ('{0}: the -Json argument is not valid JSON ({1})' -f $Function, (($_.Exception.Message -split ' \(\d+\): ', 2)[0]))
    }
    if ($value -isnot [System.Management.Automation.PSCustomObject]) {
        throw ('{0}: the -Json argument must be a JSON object, not {1}' -f $Function, (Get-JsonTypeName -Value $value))
    }
    return $value
}

function Get-JsonTypeName {
    # Name the JSON type of a parsed value, for error messages.
    [CmdletBinding()]
    param([AllowNull()] [object] $Value)
    if ($null -eq $Value) { return 'null' }
    if ($Value -is [string]) { return 'a string' }
    if ($Value -is [bool]) { return 'a boolean' }
    if ($Value -is [array]) { return 'an array' }
    if ($Value -is [System.Management.Automation.PSCustomObject]) { return 'an object' }
    return 'a number'
}

function Get-CallValue {
    # Read member Name of a parsed argument, checking its JSON type: 'any', 'string', 'boolean',
    # 'object', 'array', 'strings' ([string[]]) or 'integer' ([long] within Minimum..Maximum).
    # Absent or null gives Default (an empty array for 'array'/'strings'); -Required throws instead.
    # An array comes back as ONE object: assign it.
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)] [psobject] $Call,
        [Parameter(Mandatory = $true)] [string] $Name,
        [ValidateSet('any', 'string', 'boolean', 'object', 'array', 'strings', 'integer')] [string] $Type = 'any',
        [AllowNull()] [object] $Default = $null,
        [switch] $Required,
        [long] $Minimum = 0,
        [long] $Maximum = [long]::MaxValue,
        [string] $Function = 'remote call'
    )
    $property = $Call.PSObject.Properties[$Name]
    if ($null -eq $property -or $null -eq $property.Value) {
        if ($Required) { throw ('{0}: the -Json argument needs "{1}"' -f $Function, $Name) }
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
        'integer' { ($value -is [int]) -or ($value -is [long]) -or (($value -is [decimal] -or $value -is [double]) -and [math]::Truncate($value) -eq $value) }
        default { $value -is [array] }
    }
    if (-not $valid) { throw ('{0}: "{1}" must be {2}, got {3}' -f $Function, $Name, $Type, (Get-JsonTypeName -Value $value)) }
    if ($Type -eq 'string' -and $Required -and $value.Length -eq 0) { throw ('{0}: "{1}" must not be empty' -f $Function, $Name) }
    if ($Type -eq 'integer') {
        $number = [long]$value
        if ($number -lt $Minimum -or $number -gt $Maximum) {
            throw ('{0}: "{1}" must be between {2} and {3}, got {4}' -f $Function, $Name, $Minimum, $Maximum, $number)
        }
        return $number
    }
    if ($Type -eq 'strings') {
        foreach ($element in $value) {
            if ($element -isnot [string] -or $element.Length -eq 0) { throw ('{0}: "{1}" must hold non-empty strings' -f $Function, $Name) }
        }
        return , [string[]]$value
    }
    return , $value
}

function Get-CallMemberNames {
    # Member names of a JSON object in document order ([string[]], empty for $null).
    [CmdletBinding()]
    param([AllowNull()] [object] $Object)
    $names = New-Object -TypeName 'System.Collections.Generic.List[string]'
    if ($null -ne $Object) { foreach ($property in $Object.PSObject.Properties) { [void]$names.Add($property.Name) } }
    return , $names.ToArray()
}

function Write-CallResult {
    # Print the result as ONE line of compressed JSON ($null prints null).
    # Docs: https://learn.microsoft.com/powershell/module/microsoft.powershell.utility/convertto-json?view=powershell-5.1
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [AllowNull()] [object] $InputObject)
    # The worker reads a non-zero $LASTEXITCODE as the step's exit code; a function that got
    # here has succeeded, whatever native programs it ran and handled.
    $global:LASTEXITCODE = 0
    if ($null -eq $InputObject) { Write-Output -InputObject 'null'; return }
    Write-Output -InputObject (ConvertTo-Json -InputObject $InputObject -Depth $script:CallResultDepth -Compress)
}

function Get-Sha256Hex {
    # SHA-256 of [byte[]] or of the rest of a stream, lowercase hex.
    # Docs: https://learn.microsoft.com/dotnet/api/system.security.cryptography.sha256.create?view=netframework-4.8
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [AllowEmptyCollection()] [object] $InputObject)
    $sha = [System.Security.Cryptography.SHA256]::Create()
    try { return ([System.BitConverter]::ToString($sha.ComputeHash($InputObject)) -replace '-', '').ToLowerInvariant() }
    finally { $sha.Dispose() }
}

function Read-StreamBytes {
    # Read up to Count bytes from a stream (fewer only at its end).
    # Docs: https://learn.microsoft.com/dotnet/api/system.io.stream.read?view=netframework-4.8
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [System.IO.Stream] $Stream, [Parameter(Mandatory = $true)] [int] $Count)
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
    # "hmac-sha256:" + hex(HMAC-SHA256(Key, UTF-8(Value))), as pyinfra_iis.protocol.secret_digest.
    # Docs: https://learn.microsoft.com/dotnet/api/system.security.cryptography.hmacsha256?view=netframework-4.8
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [AllowEmptyString()] [string] $Value, [Parameter(Mandatory = $true)] [byte[]] $Key)
    $hmac = New-Object -TypeName 'System.Security.Cryptography.HMACSHA256' -ArgumentList (, $Key)
    try { return 'hmac-sha256:' + ([System.BitConverter]::ToString($hmac.ComputeHash([System.Text.Encoding]::UTF8.GetBytes($Value))) -replace '-', '').ToLowerInvariant() }
    finally { $hmac.Dispose() }
}

function ConvertFrom-DigestKey {
    # Decode "digest_key" (base64 of at least 16 bytes); the message never repeats the value.
    # Docs: https://learn.microsoft.com/dotnet/api/system.convert.frombase64string?view=netframework-4.8
    [CmdletBinding()]
    param([AllowNull()] [AllowEmptyString()] [string] $Text, [string] $Function = 'remote call')
    $key = $null
    try { if (-not [string]::IsNullOrEmpty($Text)) { $key = [System.Convert]::FromBase64String($Text) } } catch { $key = $null }
    if ($null -eq $key -or $key.Length -lt 16) { throw ("{0}: 'digest_key' must be base64 of at least 16 bytes" -f $Function) }
    return , $key
}

function Enable-ModernTls {
    # Allow TLS 1.2 for HttpWebRequest (.NET Framework 4.x may offer only older protocols).
    # Docs: https://learn.microsoft.com/dotnet/api/system.net.servicepointmanager.securityprotocol?view=netframework-4.8
    [CmdletBinding()]
    param()
    [System.Net.ServicePointManager]::SecurityProtocol = [System.Net.ServicePointManager]::SecurityProtocol -bor [System.Net.SecurityProtocolType]::Tls12
}
