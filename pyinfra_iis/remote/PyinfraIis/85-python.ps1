# PyinfraIis module, part 85: CPython on the host (python.org installer, run by Invoke-HostProgram
# of part 15).
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

    if (-not [System.IO.File]::Exists($source)) {
        throw ('{0}: installer {1} does not exist (upload it first)' -f $function, $source)
    }
    Assert-FileSha256 -Path $source -Expected $sha256 -Function $function
    [void][System.IO.Directory]::CreateDirectory($script:InstallerLogFolder)
    $log = Join-Path -Path $script:InstallerLogFolder -ChildPath ('python-{0}.log' -f $version)
    $arguments = @('/quiet', 'InstallAllUsers=1', 'PrependPath=0', 'Include_test=0', 'Include_launcher=0', ('TargetDir=' + $targetDir), '/log', $log)
    $run = Invoke-HostProgram -FilePath $source -Arguments $arguments -TimeoutSeconds $script:InstallerTimeoutSeconds -Step ('install Python {0}' -f $version) -Function $function
    if ($run['exit_code'] -ne 0 -and $run['exit_code'] -ne 3010) {
        throw ('{0}: the Python {1} installer failed with exit code {2}; last 30 lines of {3}:{4}{5}' -f $function, $version, $run['exit_code'], $log, "`n", (Get-TextFileTail -Path $log -Count 30))
    }
    $after = Get-PythonInstallState -Tag $tag
    if (-not $after['installed'] -or $after['version'] -cne $version) {
        throw ('{0}: the installer exited with {1} but HKLM\SOFTWARE\Python\PythonCore\{2} registers {3} (expected {4} at {5}); see {6}' -f $function, $run['exit_code'], $tag, $after['version'], $version, $targetDir, $log)
    }
    Write-CallResult -InputObject ([ordered]@{ installed = $true; version = $version; path = $after['path'] })
}
