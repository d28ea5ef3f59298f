# PyinfraIis module, part 15: programs run on the host (installers, venv, pip) with a time limit,
# the tails of their logs, and the SHA-256 check of a file before anything runs it.
# Programs run through System.Diagnostics.Process with stdin/stdout/stderr redirected: a child that
# inherited the worker's stdin or stdout would read or corrupt the worker's frames, and under
# $ErrorActionPreference = 'Stop' `& program 2>&1` turns the first stderr line into an error.

# Installer logs (msiexec: <product>.log; python.org: python-<version>.log).
$script:InstallerLogFolder = 'C:\ProgramData\pyinfra-iis\logs'
# An installer gets 30 minutes before it is killed.
$script:InstallerTimeoutSeconds = 1800

function ConvertTo-ProcessArgument {
    # Quote one argument so that CommandLineToArgvW reads it back unchanged.
    # Docs: https://learn.microsoft.com/cpp/c-language/parsing-c-command-line-arguments
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [AllowEmptyString()] [string] $Value)
    if ($Value.Length -gt 0 -and $Value.IndexOfAny([char[]]@(' ', "`t", "`n", "`v", '"')) -lt 0) { return $Value }
    $builder = New-Object -TypeName 'System.Text.StringBuilder'
    [void]$builder.Append('"')
    $backslashes = 0
    foreach ($character in $Value.ToCharArray()) {
        if ($character -eq '\') { $backslashes++; continue }
        if ($character -eq '"') { [void]$builder.Append([char]'\', 2 * $backslashes + 1) }
        elseif ($backslashes -gt 0) { [void]$builder.Append([char]'\', $backslashes) }
        $backslashes = 0
        [void]$builder.Append($character)
    }
    if ($backslashes -gt 0) { [void]$builder.Append([char]'\', 2 * $backslashes) }
    [void]$builder.Append('"')
    return $builder.ToString()
}

function Invoke-HostProgram {
    # Run FilePath (a full path) with Arguments, wait at most TimeoutSeconds (then kill it and
    # throw naming Step), and return {exit_code, stdout, stderr} (UTF-8). A non-zero exit code is
    # not an error here: the caller decides.
    # Docs: https://learn.microsoft.com/dotnet/api/system.diagnostics.processstartinfo?view=netframework-4.8
    # Docs: https://learn.microsoft.com/dotnet/api/system.threading.tasks.task.waitall?view=netframework-4.8
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)] [string] $FilePath,
        [AllowEmptyCollection()] [string[]] $Arguments = @(),
        [string] $WorkingDirectory,
        [hashtable] $Environment = @{},
        [int] $TimeoutSeconds = 1800,
        [Parameter(Mandatory = $true)] [string] $Step,
        [string] $Function = 'remote call'
    )
    $quoted = New-Object -TypeName 'System.Collections.Generic.List[string]'
    foreach ($argument in $Arguments) { [void]$quoted.Add((ConvertTo-ProcessArgument -Value $argument)) }
    $utf8 = New-Object -TypeName 'System.Text.UTF8Encoding' -ArgumentList $false
    $startInfo = New-Object -TypeName 'System.Diagnostics.ProcessStartInfo'
    $startInfo.FileName = $FilePath
    $startInfo.Arguments = [string]::Join(' ', $quoted.ToArray())
    $startInfo.UseShellExecute = $false
    $startInfo.CreateNoWindow = $true
    $startInfo.RedirectStandardInput = $true
    $startInfo.RedirectStandardOutput = $true
    $startInfo.RedirectStandardError = $true
    $startInfo.StandardOutputEncoding = $utf8
    $startInfo.StandardErrorEncoding = $utf8
    if (-not [string]::IsNullOrEmpty($WorkingDirectory)) { $startInfo.WorkingDirectory = $WorkingDirectory }
    foreach ($name in $Environment.Keys) { $startInfo.EnvironmentVariables[[string]$name] = [string]$Environment[$name] }
    try { $process = [System.Diagnostics.Process]::Start($startInfo) } catch {
        throw ('{0}: {1}: cannot start {2}: {3}' -f $Function, $Step, $FilePath, $_.Exception.Message)
    }
    try {
        $process.StandardInput.Close()
        # Both pipes drain while we wait, so a chatty program never blocks on a full pipe.
        $stdoutTask = $process.StandardOutput.ReadToEndAsync()
        $stderrTask = $process.StandardError.ReadToEndAsync()
        if (-not $process.WaitForExit($TimeoutSeconds * 1000)) {
            # Process.Kill() ends only this process on .NET Framework: taskkill /T ends its children too (pip, ensurepip,
            # the installer's packages), which would otherwise keep files and pipes open.
            # Docs: https://learn.microsoft.com/windows-server/administration/windows-commands/taskkill
            try {
                $kill = New-Object -TypeName 'System.Diagnostics.ProcessStartInfo' -ArgumentList ([System.IO.Path]::Combine([System.Environment]::SystemDirectory, 'taskkill.exe')), ('/PID {0} /T /F' -f $process.Id)
                $kill.UseShellExecute = $false; $kill.CreateNoWindow = $true
                $kill.RedirectStandardInput = $true; $kill.RedirectStandardOutput = $true; $kill.RedirectStandardError = $true
                $killer = [System.Diagnostics.Process]::Start($kill); $killer.StandardInput.Close(); [void]$killer.WaitForExit(30000)
            } catch { Write-Verbose -Message ('taskkill {0}: {1}' -f $process.Id, $_.Exception.Message) }
            try { if (-not $process.HasExited) { $process.Kill() } } catch { Write-Verbose -Message ('killing {0}: {1}' -f $FilePath, $_.Exception.Message) }
            throw ('{0}: {1}: {2} did not finish within {3} s and was stopped' -f $Function, $Step, $FilePath, $TimeoutSeconds)
        }
        # A grandchild that inherited the pipes can keep them open: never block on .Result.
        if (-not [System.Threading.Tasks.Task]::WaitAll(@($stdoutTask, $stderrTask), 30000)) {
            throw ('{0}: {1}: {2} exited with {3} but its output pipes stayed open (a child process holds them)' -f $Function, $Step, $FilePath, $process.ExitCode)
        }
        return [ordered]@{ exit_code = $process.ExitCode; stdout = [string]$stdoutTask.Result; stderr = [string]$stderrTask.Result }
    } finally {
        $process.Dispose()
    }
}

function Get-TextFileTail {
    # The last Count lines of a text file, or a note saying why there are none (never throws).
    # Docs: https://learn.microsoft.com/powershell/module/microsoft.powershell.management/get-content?view=powershell-5.1
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [string] $Path, [int] $Count = 30, [string] $Encoding = 'UTF8')
    if (-not [System.IO.File]::Exists($Path)) { return ('(no file at {0})' -f $Path) }
    try { $lines = @(Get-Content -LiteralPath $Path -Encoding $Encoding -Tail $Count) } catch {
        return ('(cannot read {0}: {1})' -f $Path, $_.Exception.Message)
    }
    if ($lines.Count -eq 0) { return ('({0} is empty)' -f $Path) }
    return [string]::Join("`n", [string[]]$lines)
}

function Assert-FileSha256 {
    # Throw unless the file's SHA-256 is Expected (checked BEFORE anything runs or installs it);
    # -RemoveMismatch deletes a mismatching file.
    # Docs: https://learn.microsoft.com/powershell/module/microsoft.powershell.utility/get-filehash?view=powershell-5.1
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [string] $Path, [Parameter(Mandatory = $true)] [string] $Expected, [switch] $RemoveMismatch, [string] $Function = 'remote call')
    $actual = (Get-FileHash -LiteralPath $Path -Algorithm SHA256).Hash.ToLowerInvariant()
    if ($actual -ceq $Expected.ToLowerInvariant()) { return }
    $outcome = 'nothing was run'
    if ($RemoveMismatch) {
        Remove-Item -LiteralPath $Path -Force
        $outcome = 'the file was deleted and nothing was installed'
    }
    throw ('{0}: SHA-256 mismatch for {1}: expected {2}, actual {3}; {4}' -f $Function, $Path, $Expected.ToLowerInvariant(), $actual, $outcome)
}

function Invoke-CallProgram {
    # Run what an Invoke-Program-shaped object names through Invoke-HostProgram -> {exit_code, stdout, stderr};
    # for Invoke-Program and Switch-Release's start check (part 92). Step: what errors call the run.
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [psobject] $Call, [int] $DefaultTimeout = 1800, [string] $Step = '', [string] $Function = 'remote call')
    $file = Get-CallValue -Call $Call -Name 'file' -Type string -Required -Function $Function
    $arguments = Get-CallValue -Call $Call -Name 'arguments' -Type array -Function $Function
    $directory = Get-CallValue -Call $Call -Name 'working_directory' -Type string -Default '' -Function $Function
    $timeout = Get-CallValue -Call $Call -Name 'timeout_seconds' -Type integer -Default $DefaultTimeout -Minimum 1 -Maximum 86400 -Function $Function
    $variables = Get-CallValue -Call $Call -Name 'environment' -Type object -Function $Function
    $environment = @{}
    foreach ($name in (Get-CallMemberNames -Object $variables)) { $environment[$name] = [string]$variables.$name }
    if ($Step.Length -eq 0) { $Step = 'run ' + $file }
    return Invoke-HostProgram -FilePath $file -Arguments ([string[]]$arguments) -WorkingDirectory $directory -Environment $environment -TimeoutSeconds ([int]$timeout) -Step $Step -Function $Function
}

function Invoke-Program {
    # Remote primitive: run a program with a time limit and return its exit code and the last
    # 8 KB of stdout and stderr. The controller decides what a non-zero exit code means.
    # {"file": full path, "arguments": [..], "working_directory", "environment": {name: value},
    #  "timeout_seconds": 1..86400} -> {"exit_code", "stdout", "stderr"}
    # Docs: https://learn.microsoft.com/dotnet/api/system.diagnostics.process.start?view=netframework-4.8
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [AllowEmptyString()] [string] $Json)
    $function = 'Invoke-Program'
    $call = ConvertFrom-CallJson -Json $Json -Function $function
    $run = Invoke-CallProgram -Call $call -DefaultTimeout 1800 -Function $function
    foreach ($stream in @('stdout', 'stderr')) {
        $text = [string]$run[$stream]
        if ($text.Length -gt 8192) { $run[$stream] = $text.Substring($text.Length - 8192) }
    }
    Write-CallResult -InputObject $run
}
