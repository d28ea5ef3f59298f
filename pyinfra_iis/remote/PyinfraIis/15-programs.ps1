# PyinfraIis module, part 15: programs run on the host (the installers of parts 40 and 85, venv and
# pip of part 91), the tails of their output and logs, and the SHA-256 check of an installer.
#
# Host programs run through System.Diagnostics.Process, not Start-Process -Wait (in Windows
# PowerShell 5.1 -Wait also waits for every process the program leaves behind, and has no time
# limit), and never through `& program 2>&1`: under $ErrorActionPreference = 'Stop', Windows
# PowerShell 5.1 turns the first stderr line of a native program into a terminating error (pip
# writes warnings there) [R]. Standard input, output and error are always redirected: a child that
# inherited the worker's stdin or stdout would read or corrupt the worker's frames
# (pyinfra_iis/protocol.py).

# Where installer logs go: msiexec's (<product>.log) and python.org's (python-<version>.log)
# (contract).
$script:InstallerLogFolder = 'C:\ProgramData\pyinfra-iis\logs'

# An installer is given this long (seconds) before it is killed: 30 minutes, far above the few
# minutes the IIS extension MSIs and a quiet all-users Python install take [I].
$script:InstallerTimeoutSeconds = 1800

function ConvertTo-ProcessArgument {
    <#
    .SYNOPSIS
    Quote one argument for a Windows command line so that CommandLineToArgvW (and the C runtime)
    read it back unchanged.
    .DESCRIPTION
    An argument without space, tab, newline or double quote is returned as it is. Otherwise it is
    wrapped in double quotes; a double quote inside is written \" and backslashes are doubled when
    they precede a quote or the closing quote (Microsoft docs, "Parsing C command-line arguments")
    [V].
    .PARAMETER Value
    The argument (may be empty: it becomes "").
    .OUTPUTS
    [string]
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [AllowEmptyString()]
        [string] $Value
    )
    if ($Value.Length -gt 0 -and $Value.IndexOfAny([char[]]@(' ', "`t", "`n", "`v", '"')) -lt 0) {
        return $Value
    }
    $builder = New-Object -TypeName 'System.Text.StringBuilder'
    [void]$builder.Append('"')
    $backslashes = 0
    foreach ($character in $Value.ToCharArray()) {
        if ($character -eq '\') {
            $backslashes++
            continue
        }
        if ($character -eq '"') {
            [void]$builder.Append([char]'\', 2 * $backslashes + 1)
        } elseif ($backslashes -gt 0) {
            [void]$builder.Append([char]'\', $backslashes)
        }
        $backslashes = 0
        [void]$builder.Append($character)
    }
    if ($backslashes -gt 0) {
        [void]$builder.Append([char]'\', 2 * $backslashes)
    }
    [void]$builder.Append('"')
    return $builder.ToString()
}

function Invoke-HostProgram {
    <#
    .SYNOPSIS
    Run a program on the host, wait for it (bounded) and return its exit code and output.
    .PARAMETER FilePath
    Absolute path of the program (a full path: nothing is looked up in PATH).
    .PARAMETER Arguments
    Arguments, each quoted with ConvertTo-ProcessArgument (default none).
    .PARAMETER WorkingDirectory
    Working directory (default: the worker's).
    .PARAMETER Environment
    Extra environment variables, name -> value, on top of the worker's environment.
    .PARAMETER TimeoutSeconds
    Time limit in seconds (default 1800); the process is killed when it is exceeded.
    .PARAMETER Step
    What the program does ("create the venv"), for error messages.
    .PARAMETER Function
    Name of the calling function, for error messages.
    .OUTPUTS
    Ordered dictionary {exit_code: int, stdout: string, stderr: string} (output decoded as UTF-8).
    Throws when the program cannot start or exceeds the time limit; a non-zero exit code is NOT an
    error here (the caller decides).
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $FilePath,
        [AllowEmptyCollection()]
        [string[]] $Arguments = @(),
        [string] $WorkingDirectory,
        [hashtable] $Environment = @{},
        [int] $TimeoutSeconds = 1800,
        [Parameter(Mandatory = $true)]
        [string] $Step,
        [string] $Function = 'remote call'
    )
    $quoted = New-Object -TypeName 'System.Collections.Generic.List[string]'
    foreach ($argument in $Arguments) {
        $quoted.Add((ConvertTo-ProcessArgument -Value $argument))
    }
    $startInfo = New-Object -TypeName 'System.Diagnostics.ProcessStartInfo'
    $startInfo.FileName = $FilePath
    $startInfo.Arguments = [string]::Join(' ', $quoted.ToArray())
    $startInfo.UseShellExecute = $false
    $startInfo.CreateNoWindow = $true
    $startInfo.RedirectStandardInput = $true
    $startInfo.RedirectStandardOutput = $true
    $startInfo.RedirectStandardError = $true
    $startInfo.StandardOutputEncoding = New-Object -TypeName 'System.Text.UTF8Encoding' -ArgumentList $false
    $startInfo.StandardErrorEncoding = New-Object -TypeName 'System.Text.UTF8Encoding' -ArgumentList $false
    if (-not [string]::IsNullOrEmpty($WorkingDirectory)) {
        $startInfo.WorkingDirectory = $WorkingDirectory
    }
    foreach ($name in $Environment.Keys) {
        $startInfo.EnvironmentVariables[[string]$name] = [string]$Environment[$name]
    }
    try {
        $process = [System.Diagnostics.Process]::Start($startInfo)
    } catch {
        throw ('{0}: {1}: cannot start {2}: {3}' -f $Function, $Step, $FilePath, $_.Exception.Message)
    }
    try {
        $process.StandardInput.Close()
        # Both pipes are drained by .NET tasks while we wait, so a chatty program cannot block on a
        # full pipe (ProcessStartInfo.RedirectStandardOutput remarks, Microsoft docs) [V].
        $stdoutTask = $process.StandardOutput.ReadToEndAsync()
        $stderrTask = $process.StandardError.ReadToEndAsync()
        if (-not $process.WaitForExit($TimeoutSeconds * 1000)) {
            try { $process.Kill() } catch { Write-Verbose -Message ('killing {0}: {1}' -f $FilePath, $_.Exception.Message) }
            throw ('{0}: {1}: {2} did not finish within {3} s and was stopped' -f $Function, $Step, $FilePath, $TimeoutSeconds)
        }
        [void][System.Threading.Tasks.Task]::WaitAll(@($stdoutTask, $stderrTask), 30000)
        return [ordered]@{
            exit_code = $process.ExitCode
            stdout = [string]$stdoutTask.Result
            stderr = [string]$stderrTask.Result
        }
    } finally {
        $process.Dispose()
    }
}

function Get-TextTail {
    <#
    .SYNOPSIS
    Return the last Count lines of a text (program output), joined with newlines.
    .PARAMETER Text
    The text; $null or empty gives '(no output)'.
    .PARAMETER Count
    Number of lines (default 30).
    .OUTPUTS
    [string]
    #>
    [CmdletBinding()]
    param(
        [AllowNull()]
        [AllowEmptyString()]
        [string] $Text,
        [int] $Count = 30
    )
    if ([string]::IsNullOrWhiteSpace($Text)) {
        return '(no output)'
    }
    $lines = $Text.TrimEnd().Replace("`r`n", "`n").Split([char]"`n")
    $first = [math]::Max(0, $lines.Length - $Count)
    return [string]::Join("`n", $lines[$first..($lines.Length - 1)])
}

function Get-TextFileTail {
    <#
    .SYNOPSIS
    Return the last Count lines of a text file joined with newlines, or a note when it is absent.
    .PARAMETER Path
    The file.
    .PARAMETER Count
    Number of lines (default 30).
    .PARAMETER Encoding
    Get-Content -Encoding value (default UTF8; stdout logs of the app and Burn logs are UTF-8 or
    ASCII text [I]).
    .OUTPUTS
    [string]. Never throws: a file that cannot be read gives a note with the reason.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Path,
        [int] $Count = 30,
        [string] $Encoding = 'UTF8'
    )
    if (-not [System.IO.File]::Exists($Path)) {
        return ('(no file at {0})' -f $Path)
    }
    try {
        $lines = @(Get-Content -LiteralPath $Path -Encoding $Encoding -Tail $Count)
    } catch {
        return ('(cannot read {0}: {1})' -f $Path, $_.Exception.Message)
    }
    if ($lines.Count -eq 0) {
        return ('({0} is empty)' -f $Path)
    }
    return [string]::Join("`n", [string[]]$lines)
}

function Assert-FileSha256 {
    <#
    .SYNOPSIS
    Check a file's SHA-256 (Get-FileHash) against the expected digest BEFORE anything runs or
    installs it.
    .PARAMETER Path
    The file on the host (it must exist).
    .PARAMETER Expected
    64 hex digits, any case.
    .PARAMETER RemoveMismatch
    Delete a mismatching file so it can never be installed later (an MSI package copied into
    $script:MsiFolder); without it the file is left for inspection and never run (an uploaded
    installer).
    .PARAMETER Function
    Name of the calling function, for error messages.
    .OUTPUTS
    Nothing. Throws on a mismatch, with the expected and actual digests: '<Function>: SHA-256
    mismatch for <Path>: expected <hex>, actual <hex>; the file was deleted and nothing was
    installed' (-RemoveMismatch) or '...; nothing was run'.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Path,
        [Parameter(Mandatory = $true)]
        [string] $Expected,
        [switch] $RemoveMismatch,
        [string] $Function = 'remote call'
    )
    $actual = (Get-FileHash -LiteralPath $Path -Algorithm SHA256).Hash.ToLowerInvariant()
    if ($actual -ceq $Expected.ToLowerInvariant()) { return }
    $outcome = 'nothing was run'
    if ($RemoveMismatch) {
        Remove-Item -LiteralPath $Path -Force
        $outcome = 'the file was deleted and nothing was installed'
    }
    throw ('{0}: SHA-256 mismatch for {1}: expected {2}, actual {3}; {4}' -f $Function, $Path, $Expected.ToLowerInvariant(), $actual, $outcome)
}
