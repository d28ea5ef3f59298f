# PyinfraIis module, part 85: CPython on the host (python.org installer, a WiX Burn bundle).
# Detection is raw registry values (PEP 514, HKLM\SOFTWARE\Python\PythonCore\<x.y>); the
# controller decides what they mean (pyinfra_iis/facts/python_state.py).

function Get-PythonState {
    # The "pythons" part of Get-HostState: tag -> {version, install_path, executable_path, exists}.
    # Docs: https://peps.python.org/pep-0514/
    # Docs: https://learn.microsoft.com/dotnet/api/microsoft.win32.registrykey.opensubkey?view=netframework-4.8
    [CmdletBinding()]
    param([AllowEmptyCollection()] [string[]] $Versions = @(), [string] $Function = 'remote call')
    $state = [ordered]@{}
    foreach ($tag in $Versions) {
        if ($tag -notmatch '^3\.\d{1,2}$') { throw ('{0}: python_versions holds "{1}"; expected "3.<minor>"' -f $Function, $tag) }
        $entry = [ordered]@{ version = $null; install_path = $null; executable_path = $null; exists = $false }
        $key = [Microsoft.Win32.Registry]::LocalMachine.OpenSubKey('SOFTWARE\Python\PythonCore\' + $tag)
        if ($null -ne $key) {
            try {
                $entry['version'] = $key.GetValue('Version')
                $install = $key.OpenSubKey('InstallPath')
                if ($null -ne $install) {
                    try {
                        $entry['install_path'] = $install.GetValue('')
                        $entry['executable_path'] = $install.GetValue('ExecutablePath')
                    } finally { $install.Close() }
                }
            } finally { $key.Close() }
        }
        $exe = [string]$entry['executable_path']
        if ([string]::IsNullOrEmpty($exe) -and $null -ne $entry['install_path']) { $exe = Join-Path -Path ([string]$entry['install_path']) -ChildPath 'python.exe' }
        $entry['exists'] = (-not [string]::IsNullOrEmpty($exe)) -and [System.IO.File]::Exists($exe)
        $state[$tag] = $entry
    }
    return $state
}

function Install-Python {
    # Run the python.org installer after checking its SHA-256:
    # <source> /quiet /norestart InstallAllUsers=1 PrependPath=0 Include_test=0 Include_launcher=0
    #   CompileAll=1 TargetDir=<target_dir> /log <log>
    # /norestart: on 3010 Burn would otherwise restart the host itself; 3010 is returned as
    # restart_needed. Afterwards the registered path must be target_dir (an upgrade reuses the old
    # install's TargetDir). {"version", "source", "sha256", "target_dir"} ->
    # {"installed", "version", "path", "restart_needed"}.
    # Docs: https://docs.python.org/3/using/windows.html#installing-without-ui
    # Docs: https://learn.microsoft.com/windows/win32/msi/error-codes
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [AllowEmptyString()] [string] $Json)
    $function = 'Install-Python'
    $call = ConvertFrom-CallJson -Json $Json -Function $function
    $version = Get-CallValue -Call $call -Name 'version' -Type string -Required -Function $function
    $source = Get-CallValue -Call $call -Name 'source' -Type string -Required -Function $function
    $sha256 = Get-CallValue -Call $call -Name 'sha256' -Type string -Required -Function $function
    $targetDir = (Get-CallValue -Call $call -Name 'target_dir' -Type string -Required -Function $function).TrimEnd('\')
    if ($version -notmatch '^3\.\d{1,2}\.\d{1,3}$' -or $sha256 -notmatch '^[0-9A-Fa-f]{64}$') { throw ('{0}: "version" must be 3.x.y and "sha256" 64 hex digits' -f $function) }
    if ($source -notmatch '^[A-Za-z]:\\' -or $targetDir -notmatch '^[A-Za-z]:\\' -or ($source + $targetDir).IndexOf('"') -ge 0) { throw ('{0}: "source" and "target_dir" must be absolute drive paths' -f $function) }
    $tag = $version.Substring(0, $version.LastIndexOf('.'))
    $before = (Get-PythonState -Versions @($tag) -Function $function)[$tag]
    if ($before['exists'] -and [string]$before['version'] -ceq $version) {
        Write-CallResult -InputObject ([ordered]@{ installed = $false; version = $version; path = $before['executable_path']; restart_needed = $false })
        return
    }
    if (-not [System.IO.File]::Exists($source)) { throw ('{0}: installer {1} does not exist (upload it first)' -f $function, $source) }
    Assert-FileSha256 -Path $source -Expected $sha256 -Function $function
    [void][System.IO.Directory]::CreateDirectory($script:InstallerLogFolder)
    $log = Join-Path -Path $script:InstallerLogFolder -ChildPath ('python-{0}.log' -f $version)
    $arguments = @('/quiet', '/norestart', 'InstallAllUsers=1', 'PrependPath=0', 'Include_test=0', 'Include_launcher=0', 'CompileAll=1', ('TargetDir=' + $targetDir), '/log', $log)
    $run = Invoke-HostProgram -FilePath $source -Arguments $arguments -TimeoutSeconds $script:InstallerTimeoutSeconds -Step ('install Python {0}' -f $version) -Function $function
    $code = $run['exit_code']
    if ($code -ne 0 -and $code -ne 3010) {
        $why = ''
        if ($code -eq 1638) { $why = ' (1638: another version of this product is installed; a downgrade is refused)' }
        # Burn writes each package's MSI log beside its own: <log without .log>_NNN_<package>.log.
        $msiLogs = @(Get-ChildItem -LiteralPath $script:InstallerLogFolder -Filter ('python-{0}_*.log' -f $version) | Sort-Object -Property Name)
        $msiTail = ''
        if ($msiLogs.Count -gt 0) { $msiTail = "`nLast 30 lines of {0}:`n{1}" -f $msiLogs[-1].FullName, (Get-TextFileTail -Path $msiLogs[-1].FullName -Count 30) }
        throw ('{0}: the Python {1} installer failed with exit code {2}{3}; last 30 lines of {4}:{5}{6}{7}' -f $function, $version, $code, $why, $log, "`n", (Get-TextFileTail -Path $log -Count 30), $msiTail)
    }
    $after = (Get-PythonState -Versions @($tag) -Function $function)[$tag]
    $registered = ([string]$after['install_path']).TrimEnd('\')
    if (-not $after['exists'] -or [string]$after['version'] -cne $version -or -not [string]::Equals($registered, $targetDir, [System.StringComparison]::OrdinalIgnoreCase)) {
        throw ('{0}: the installer exited with {1} but HKLM registers Python {2} {3} at {4} (expected {5} at {6}); see {7}' -f $function, $code, $tag, $after['version'], $registered, $version, $targetDir, $log)
    }
    Write-CallResult -InputObject ([ordered]@{ installed = $true; version = $version; path = $after['executable_path']; restart_needed = ($code -eq 3010) })
}
