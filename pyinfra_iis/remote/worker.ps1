# pyinfra-iis worker, protocol 1 (see pyinfra_iis/protocol.py).
# Started once per host by the @winrm connector with -EncodedCommand. Reads one frame per
# stdin line, runs it in a persistent runspace and writes one reply line per step.
Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$utf8 = New-Object System.Text.UTF8Encoding $false
[Console]::InputEncoding = $utf8
[Console]::OutputEncoding = $utf8
$marker = '##pyinfra-iis-reply## '
$stdin = [Console]::In
$stdout = [Console]::Out
$runspace = [runspacefactory]::CreateRunspace()
$runspace.Open()
$runspace.SessionStateProxy.SetVariable('ErrorActionPreference', 'Stop')
$runspace.SessionStateProxy.SetVariable('ProgressPreference', 'SilentlyContinue')

function Send-Reply([int]$Id, [int]$Code, [string]$Out, [string]$Err) {
    $reply = @{ id = $Id; rc = $Code; stdout = $Out; stderr = $Err }
    $json = ConvertTo-Json -Compress -InputObject $reply
    $stdout.WriteLine($marker + [Convert]::ToBase64String($utf8.GetBytes($json)))
    $stdout.Flush()
}

function Invoke-Step([int]$Id, [string]$Script, [object[]]$Arguments) {
    $ps = [powershell]::Create()
    $ps.Runspace = $runspace
    [void]$ps.AddScript($Script)
    foreach ($argument in $Arguments) { [void]$ps.AddArgument($argument) }
    [void]$ps.AddCommand('Out-String').AddParameter('Width', 4096)
    $runspace.SessionStateProxy.SetVariable('LASTEXITCODE', 0)
    $out = ''
    $err = New-Object System.Text.StringBuilder
    $code = 0
    try {
        $out = -join $ps.Invoke()
    } catch {
        $inner = $_.Exception
        while ($null -ne $inner.InnerException) { $inner = $inner.InnerException }
        [void]$err.AppendLine($inner.Message)
        $code = 1
    }
    foreach ($record in $ps.Streams.Information) { $out += [string]$record.MessageData + "`r`n" }
    foreach ($record in $ps.Streams.Warning) { [void]$err.AppendLine('WARNING: ' + $record.Message) }
    foreach ($record in $ps.Streams.Error) { [void]$err.AppendLine(($record | Out-String).TrimEnd()) }
    # Not $ps.HadErrors: it is also true for errors a script caught or suppressed and for native
    # stderr output (PowerShell issues #4613, #5425). A failure is an uncaught terminating error,
    # a record in the error stream, or a non-zero $LASTEXITCODE (exit N, a failed native program).
    if ($ps.Streams.Error.Count -gt 0 -and $code -eq 0) { $code = 1 }
    $last = $runspace.SessionStateProxy.GetVariable('LASTEXITCODE')
    if ($last -is [int] -and $last -ne 0) { $code = $last }
    $ps.Dispose()
    Send-Reply -Id $Id -Code $code -Out $out -Err $err.ToString()
}

$loadModule = 'param($Name, $Source) New-Module -Name $Name -ScriptBlock ([scriptblock]::Create($Source)) | Import-Module -Global'

while ($true) {
    $line = $stdin.ReadLine()
    if ($null -eq $line) { break }
    if ($line.Length -eq 0) { continue }
    if ($line[0] -eq '+') {
        # Upload data: handed to the module, which keeps any error for Complete-FileUpload.
        $ps = [powershell]::Create()
        $ps.Runspace = $runspace
        [void]$ps.AddCommand('Add-FileUploadChunk').AddParameter('Base64', $line.Substring(1))
        try { [void]$ps.Invoke() } catch { }
        $ps.Dispose()
        continue
    }
    try {
        $frame = $utf8.GetString([Convert]::FromBase64String($line)) | ConvertFrom-Json
    } catch {
        Send-Reply -Id -1 -Code 1 -Out '' -Err ('invalid frame: ' + $_.Exception.Message)
        continue
    }
    if ($frame.op -eq 'module') {
        Invoke-Step -Id $frame.id -Script $loadModule -Arguments @($frame.name, $frame.source)
    } else {
        Invoke-Step -Id $frame.id -Script $frame.script -Arguments @()
    }
}
$runspace.Close()
exit 0
