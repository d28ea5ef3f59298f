# PyinfraIis module, part 20: Get-HostState, the one wide fact (docs/remote-functions.md).
# The host reports RAW data; facts/*_state.py on the controller turns it into what the
# operations read. Registry reads use Microsoft.Win32.Registry, not the HKLM: drive: a missing
# key is then $null, not an error record.
# Docs: https://learn.microsoft.com/dotnet/api/microsoft.win32.registrykey.opensubkey
#       https://learn.microsoft.com/powershell/module/servermanager/get-windowsfeature
#       https://learn.microsoft.com/dotnet/api/system.environment.getenvironmentvariable

function Get-RegistryValue {
    # Without -Name: whether HKLM\<Key> exists; with -Name: its value or $null.
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [string] $Key, [string] $Name)
    $handle = [Microsoft.Win32.Registry]::LocalMachine.OpenSubKey($Key)
    if ($null -eq $handle) {
        if ([string]::IsNullOrEmpty($Name)) { return $false }
        return $null
    }
    try {
        if ([string]::IsNullOrEmpty($Name)) { return $true }
        return , $handle.GetValue($Name)
    } finally {
        $handle.Close()
    }
}

function Test-RebootPending {
    # The markers ComputerManagementDsc's PendingReboot checks (servicing, Windows Update, renames).
    [CmdletBinding()]
    param()
    if (Get-RegistryValue -Key 'SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootPending') { return $true }
    if (Get-RegistryValue -Key 'SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update\RebootRequired') { return $true }
    $renames = Get-RegistryValue -Key 'SYSTEM\CurrentControlSet\Control\Session Manager' -Name 'PendingFileRenameOperations'
    foreach ($entry in @($renames)) {
        if (-not [string]::IsNullOrEmpty([string]$entry)) { return $true }
    }
    return $false
}

function Get-InstalledFeatureNames {
    # Installed feature names, sorted ordinally (as Python's sorted()).
    [CmdletBinding()]
    param()
    $names = New-Object -TypeName 'System.Collections.Generic.List[string]'
    foreach ($feature in (Get-WindowsFeature)) {
        if ($feature.Installed) { [void]$names.Add([string]$feature.Name) }
    }
    $sorted = $names.ToArray()
    [System.Array]::Sort($sorted, [System.StringComparer]::Ordinal)
    return , $sorted
}

function Get-IisExtensionState {
    # Detection from files and the registry (docs/field-facts.md); the controller also counts an
    # extension installed when its global module is registered in applicationHost.config.
    # Docs: https://learn.microsoft.com/dotnet/api/system.diagnostics.fileversioninfo.getversioninfo
    [CmdletBinding()]
    param()
    $dll = Join-Path -Path (Get-InetsrvPath) -ChildPath 'httpPlatformHandler.dll'
    $version = $null
    if ([System.IO.File]::Exists($dll)) {
        $info = [System.Diagnostics.FileVersionInfo]::GetVersionInfo($dll)
        $version = '{0}.{1}.{2}.{3}' -f $info.FileMajorPart, $info.FileMinorPart, $info.FileBuildPart, $info.FilePrivatePart
    }
    $state = [ordered]@{ HttpPlatformHandler = [ordered]@{ installed = ($null -ne $version); version = $version } }
    foreach ($product in @(@('UrlRewrite', 'URL Rewrite'), @('ARR', 'Application Request Routing'))) {
        $key = 'SOFTWARE\Microsoft\IIS Extensions\' + $product[1]
        $exists = [bool](Get-RegistryValue -Key $key)
        $version = $null
        if ($exists) { $version = [string](Get-RegistryValue -Key $key -Name 'Version'); if ($version.Length -eq 0) { $version = $null } }
        $state[$product[0]] = [ordered]@{ installed = $exists; version = $version }
    }
    return $state
}

function Get-HostState {
    # -Json {"digest_key": "<base64>", "acl_paths": [...], "cert_stores": [...], "release_roots": [...],
    # "python_versions": [...]} -> {computer_name, environment, reboot_pending, features, extensions, iis,
    # certificates, acls, pythons, releases, grant_record}; "iis" (null until Web-Server is installed) is
    # Get-IisHostState's raw answer (part 51).
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [AllowEmptyString()] [string] $Json)
    $function = 'Get-HostState'
    $call = ConvertFrom-CallJson -Json $Json -Function $function
    $digestKey = ConvertFrom-DigestKey -Text (Get-CallValue -Call $call -Name 'digest_key' -Type string -Function $function) -Function $function
    $aclPaths = Get-CallValue -Call $call -Name 'acl_paths' -Type strings -Function $function
    $certStores = Get-CallValue -Call $call -Name 'cert_stores' -Type strings -Function $function
    $releaseRoots = Get-CallValue -Call $call -Name 'release_roots' -Type strings -Function $function
    $pythonVersions = Get-CallValue -Call $call -Name 'python_versions' -Type strings -Function $function
    $features = Get-InstalledFeatureNames
    $iis = $null
    if (($features -contains 'Web-Server') -and (Test-IisInstalled)) {
        $iis = Get-IisHostState -DigestKey $digestKey -Function $function
    }
    # The variables IIS expands in physicalPath and log directories (compared expanded on the controller).
    $environment = [ordered]@{}
    foreach ($name in @('SystemDrive', 'SystemRoot', 'windir', 'ProgramData', 'ProgramFiles', 'ALLUSERSPROFILE', 'PUBLIC')) { $environment[$name] = [System.Environment]::GetEnvironmentVariable($name) }
    $result = [ordered]@{
        computer_name = [string]$env:COMPUTERNAME
        environment = $environment
        reboot_pending = Test-RebootPending
        # Plain .NET arrays: 5.1's ConvertTo-Json writes a PSObject-wrapped array as {"value": [...]}.
        features = [string[]]$features
        extensions = Get-IisExtensionState
        iis = $iis
        certificates = [object[]](Get-CertificateState -Stores $certStores -Function $function)
        acls = Get-PathAclState -Paths $aclPaths -Function $function
        pythons = Get-PythonState -Versions $pythonVersions -Function $function
        releases = Get-ReleaseRootState -Roots $releaseRoots -Function $function -DigestKey $digestKey
        grant_record = Get-GrantRecord
    }
    Write-CallResult -InputObject $result
}
