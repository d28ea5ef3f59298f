# PyinfraIis module, part 85: CPython on the host (python.org installer) and the runner of host
# programs that parts 85 and 90 share.
#
# Contract: docs/remote-functions.md, "Releases" (Install-Python, Get-HostState "pythons").
# Facts relied on:
# - python.org installer options: /quiet, InstallAllUsers=1, PrependPath=0, Include_test=0,
#   Include_launcher=0, TargetDir=<dir>, /log <file> (CPython docs, "Using Python on Windows",
#   "Installing Without UI"; the option table of python/cpython#91809) [V]; the classic installer,
#   not the install manager, on Windows Server (field notes, Python on Windows Server) [V].
# - Detection: PEP 514, HKLM\SOFTWARE\Python\PythonCore\<x.y> (value Version, e.g. "3.12.7") and
#   its InstallPath subkey (default value = folder, value ExecutablePath = python.exe); all-users
#   installs register under HKLM, per-user ones under HKCU, which the pool identity cannot use
#   (field notes) [V]. A 64-bit worker reads the 64-bit registry view, where the amd64 installer
#   registers [I].
# - The installer is a WiX Burn bundle: exit 0 = success, 3010 = success with a restart required
#   (Windows Installer codes passed through) [I]; Burn writes its main log at the /log path, package
#   logs beside it (<log>_NNN_<package>.log), as UTF-8/ANSI text [I].
#
# Host programs run through System.Diagnostics.Process, not Start-Process -Wait (in Windows
# PowerShell 5.1 -Wait also waits for every process the program leaves behind, and has no time
# limit; the same reason as 40-msi.ps1), and never through `& program 2>&1`: under
# $ErrorActionPreference = 'Stop', Windows PowerShell 5.1 turns the first stderr line of a native
# program into a terminating error (pip writes warnings there) [R]. Standard input, output and error
# are always redirected: a child that inherited the worker's stdin or stdout would read or corrupt
# the worker's frames (pyinfra_iis/protocol.py).

# Where installer logs go (same folder as the MSI logs of 40-msi.ps1; contract).
$script:PythonLogFolder = 'C:\ProgramData\pyinfra-iis\logs'

# The Python installer is given this long (seconds) before it is killed: 30 minutes, far above the
# one to three minutes a quiet all-users install takes [I].
$script:PythonInstallTimeoutSeconds = 1800

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

function Get-PythonInstallState {
    <#
    .SYNOPSIS
    Detect the all-users CPython x.y registered under HKLM (PEP 514).
    .PARAMETER Tag
    "3.12": the PythonCore tag (major.minor).
    .OUTPUTS
    Ordered dictionary {installed: bool, version: "3.12.7" or $null, path: python.exe or $null}.
    installed is true only when the registered python.exe exists. The version is the tag key's
    Version value, else the ProductVersion of python.exe [I].
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Tag
    )
    $absent = [ordered]@{ installed = $false; version = $null; path = $null }
    $key = 'SOFTWARE\Python\PythonCore\' + $Tag
    $path = Get-RegistryValue -Key ($key + '\InstallPath') -Name 'ExecutablePath'
    if ([string]::IsNullOrEmpty([string]$path)) {
        $folder = Get-PythonInstallFolder -Key ($key + '\InstallPath')
        if ([string]::IsNullOrEmpty($folder)) { return $absent }
        $path = Join-Path -Path $folder -ChildPath 'python.exe'
    }
    $path = [string]$path
    if (-not [System.IO.File]::Exists($path)) { return $absent }
    $version = [string](Get-RegistryValue -Key $key -Name 'Version')
    if ($version -notmatch '^\d+\.\d+\.\d+') {
        $version = [string][System.Diagnostics.FileVersionInfo]::GetVersionInfo($path).ProductVersion
    }
    if ([string]::IsNullOrEmpty($version)) { $version = $null }
    return [ordered]@{ installed = $true; version = $version; path = $path }
}

function Get-PythonInstallFolder {
    <#
    .SYNOPSIS
    Return the default value of an HKLM InstallPath key (the installation folder), or $null.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Key
    )
    $handle = [Microsoft.Win32.Registry]::LocalMachine.OpenSubKey($Key)
    if ($null -eq $handle) { return $null }
    try {
        $value = $handle.GetValue('')
        if ($null -eq $value) { return $null }
        return [string]$value
    } finally {
        $handle.Close()
    }
}

function Get-PythonState {
    <#
    .SYNOPSIS
    The "pythons" part of Get-HostState: the state of each requested CPython x.y.
    .PARAMETER Versions
    Tags such as "3.12" (the python_versions argument; empty gives an empty dictionary).
    .PARAMETER Function
    Name of the calling function, for error messages.
    .OUTPUTS
    Ordered dictionary tag -> {installed, version, path} (Get-PythonInstallState). Throws when a
    tag is not "3.<minor>".
    #>
    [CmdletBinding()]
    param(
        [AllowEmptyCollection()]
        [string[]] $Versions = @(),
        [string] $Function = 'remote call'
    )
    $state = [ordered]@{}
    foreach ($tag in $Versions) {
        if ($tag -notmatch '^3\.\d{1,2}$') {
            throw ('{0}: python_versions holds "{1}"; expected "3.<minor>" such as "3.12"' -f $Function, $tag)
        }
        $state[$tag] = Get-PythonInstallState -Tag $tag
    }
    return $state
}

function Assert-InstallerSha256 {
    <#
    .SYNOPSIS
    Check the installer's SHA-256 (Get-FileHash) BEFORE anything runs it.
    .PARAMETER Path
    The installer on the host.
    .PARAMETER Expected
    64 hex digits, any case.
    .OUTPUTS
    Nothing. Throws when the file is missing, or on a mismatch (expected and actual digests in the
    message; the file is left for inspection and is never run).
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Path,
        [Parameter(Mandatory = $true)]
        [string] $Expected,
        [string] $Function = 'remote call'
    )
    if (-not [System.IO.File]::Exists($Path)) {
        throw ('{0}: installer {1} does not exist (upload it first)' -f $Function, $Path)
    }
    $actual = (Get-FileHash -LiteralPath $Path -Algorithm SHA256).Hash.ToLowerInvariant()
    if ($actual -cne $Expected.ToLowerInvariant()) {
        throw ('{0}: SHA-256 mismatch for {1}: expected {2}, actual {3}; nothing was run' -f $Function, $Path, $Expected.ToLowerInvariant(), $actual)
    }
}

function Install-Python {
    <#
    .SYNOPSIS
    Install CPython for all users with the python.org installer, after checking its SHA-256.
    .PARAMETER Json
    {"version": "3.12.7", "source": installer path on the host (uploaded first), "sha256": 64 hex
    digits, "target_dir": "C:\\Program Files\\Python312"}.
    .OUTPUTS
    One line {"installed": bool, "version": "3.12.7", "path": "...\\python.exe"}. installed is
    false (and nothing runs, not even the hash check) when HKLM already registers the same x.y.z.
    Otherwise runs `<source> /quiet InstallAllUsers=1 PrependPath=0 Include_test=0
    Include_launcher=0 TargetDir=<target_dir> /log <log>` (log:
    C:\ProgramData\pyinfra-iis\logs\python-<version>.log), at most 30 minutes.
    Throws when an argument is invalid, the installer is missing or its SHA-256 differs (before it
    runs), it exits with anything but 0 or 3010 (message: exit code and the last 30 lines of its
    log), or the requested version is not registered afterwards.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [AllowEmptyString()]
        [string] $Json
    )
    $function = 'Install-Python'
    $call = ConvertFrom-CallJson -Json $Json -Function $function
    $version = Get-CallValue -Call $call -Name 'version' -Type string -Required -Function $function
    $source = Get-CallValue -Call $call -Name 'source' -Type string -Required -Function $function
    $sha256 = Get-CallValue -Call $call -Name 'sha256' -Type string -Required -Function $function
    $targetDir = Get-CallValue -Call $call -Name 'target_dir' -Type string -Required -Function $function
    if ($version -notmatch '^3\.(\d{1,2})\.\d{1,3}$') {
        throw ('{0}: "version" must be "3.<minor>.<micro>" such as "3.12.7", got "{1}"' -f $function, $version)
    }
    if ($sha256 -notmatch '^[0-9A-Fa-f]{64}$') {
        throw ('{0}: "sha256" must be 64 hex digits' -f $function)
    }
    foreach ($pair in @(@('source', $source), @('target_dir', $targetDir))) {
        if ($pair[1] -notmatch '^[A-Za-z]:\\' -or $pair[1].IndexOf('"') -ge 0) {
            throw ('{0}: "{1}" must be an absolute drive path (C:\...) without quotes, got "{2}"' -f $function, $pair[0], $pair[1])
        }
    }
    $tag = $version.Substring(0, $version.LastIndexOf('.'))

    $before = Get-PythonInstallState -Tag $tag
    if ($before['installed'] -and $before['version'] -ceq $version) {
        Write-CallResult -InputObject ([ordered]@{ installed = $false; version = $version; path = $before['path'] })
        return
    }

    Assert-InstallerSha256 -Path $source -Expected $sha256 -Function $function
    [void][System.IO.Directory]::CreateDirectory($script:PythonLogFolder)
    $log = Join-Path -Path $script:PythonLogFolder -ChildPath ('python-{0}.log' -f $version)
    $arguments = @('/quiet', 'InstallAllUsers=1', 'PrependPath=0', 'Include_test=0', 'Include_launcher=0', ('TargetDir=' + $targetDir), '/log', $log)
    $run = Invoke-HostProgram -FilePath $source -Arguments $arguments -TimeoutSeconds $script:PythonInstallTimeoutSeconds -Step ('install Python {0}' -f $version) -Function $function
    if ($run['exit_code'] -ne 0 -and $run['exit_code'] -ne 3010) {
        throw ('{0}: the Python {1} installer failed with exit code {2}; last 30 lines of {3}:{4}{5}' -f $function, $version, $run['exit_code'], $log, "`n", (Get-TextFileTail -Path $log -Count 30))
    }
    $after = Get-PythonInstallState -Tag $tag
    if (-not $after['installed'] -or $after['version'] -cne $version) {
        throw ('{0}: the installer exited with {1} but HKLM\SOFTWARE\Python\PythonCore\{2} registers {3} (expected {4} at {5}); see {6}' -f $function, $run['exit_code'], $tag, $after['version'], $version, $targetDir, $log)
    }
    Write-CallResult -InputObject ([ordered]@{ installed = $true; version = $version; path = $after['path'] })
}
