# PyinfraIis module, part 20: Get-HostState, the one wide fact.
#
# Contract: docs/remote-functions.md, "Read: Get-HostState". The IIS part is built by helpers of
# 51-iisconfig-read.ps1 (configuration) and 60-runtime.ps1 (runtime state), certificates by
# 70-certificates.ps1, ACLs by 80-acl.ps1; the module is one script, so the order of the files does
# not matter for calls made at run time.
#
# Registry reads go through Microsoft.Win32.Registry, not the HKLM: drive: a missing key or value is
# then $null instead of an error record (an error record, even one silenced with -ErrorAction, can
# make the worker report the step as failed).

# --- Host facts

function Get-RegistryValue {
    <#
    .SYNOPSIS
    Read a value under HKEY_LOCAL_MACHINE without producing error records.
    .PARAMETER Key
    Subkey path under HKLM, e.g. 'SOFTWARE\Microsoft\IIS Extensions\URL Rewrite'.
    .PARAMETER Name
    Value name; omit to only test that the key exists.
    .OUTPUTS
    Without -Name: $true / $false (key exists). With -Name: the value, or $null when the key or the
    value is absent.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Key,
        [string] $Name
    )
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
    <#
    .SYNOPSIS
    Tell whether Windows waits for a restart.
    .DESCRIPTION
    True when any of the usual markers is present (the checks Microsoft's ComputerManagementDsc
    PendingReboot resource makes, minus computer rename and the ConfigMgr client) [R]:
    HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootPending (key),
    HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update\RebootRequired (key),
    HKLM\SYSTEM\CurrentControlSet\Control\Session Manager\PendingFileRenameOperations (non-empty
    value; some anti-virus products leave entries there, so this can report a restart that nothing
    strictly needs).
    .OUTPUTS
    [bool]
    #>
    [CmdletBinding()]
    param()
    if (Get-RegistryValue -Key 'SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootPending') {
        return $true
    }
    if (Get-RegistryValue -Key 'SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update\RebootRequired') {
        return $true
    }
    $renames = Get-RegistryValue -Key 'SYSTEM\CurrentControlSet\Control\Session Manager' -Name 'PendingFileRenameOperations'
    if ($null -eq $renames) {
        return $false
    }
    foreach ($entry in @($renames)) {
        if (-not [string]::IsNullOrEmpty([string]$entry)) { return $true }
    }
    return $false
}

function Get-InstalledFeatureNames {
    <#
    .SYNOPSIS
    Return the names of the installed Windows features (ServerManager's Get-WindowsFeature), sorted
    ordinally (the order Python's sorted() gives).
    .OUTPUTS
    [string[]]
    #>
    [CmdletBinding()]
    param()
    $names = New-Object -TypeName 'System.Collections.Generic.List[string]'
    foreach ($feature in (Get-WindowsFeature)) {
        if ($feature.Installed) {
            $names.Add([string]$feature.Name)
        }
    }
    $sorted = $names.ToArray()
    [System.Array]::Sort($sorted, [System.StringComparer]::Ordinal)
    return , $sorted
}

function Get-IisExtensionState {
    <#
    .SYNOPSIS
    Detect the IIS extensions the project installs: HttpPlatformHandler, UrlRewrite, ARR.
    .DESCRIPTION
    Detection, not product codes (several installer builds exist; field notes, HttpPlatformHandler
    and URL Rewrite / ARR) [R]:
    - HttpPlatformHandler: %windir%\System32\inetsrv\httpPlatformHandler.dll (version = its file
      version) or the global module httpPlatformHandler;
    - UrlRewrite: HKLM\SOFTWARE\Microsoft\IIS Extensions\URL Rewrite (value Version) or the global
      module RewriteModule;
    - ARR: HKLM\SOFTWARE\Microsoft\IIS Extensions\Application Request Routing (value Version) or the
      global module ApplicationRequestRouting.
    .PARAMETER GlobalModules
    Names of the registered global modules (empty when IIS is not installed).
    .OUTPUTS
    Ordered dictionary name -> {installed: bool, version: string or $null}.
    #>
    [CmdletBinding()]
    param(
        [AllowEmptyCollection()]
        [string[]] $GlobalModules = @()
    )
    $state = [ordered]@{}

    $dll = Join-Path -Path (Get-InetsrvPath) -ChildPath 'httpPlatformHandler.dll'
    $version = $null
    if ([System.IO.File]::Exists($dll)) {
        $info = [System.Diagnostics.FileVersionInfo]::GetVersionInfo($dll)
        $version = '{0}.{1}.{2}.{3}' -f $info.FileMajorPart, $info.FileMinorPart, $info.FileBuildPart, $info.FilePrivatePart
    }
    $state['HttpPlatformHandler'] = [ordered]@{
        installed = ($null -ne $version) -or ($GlobalModules -contains 'httpPlatformHandler')
        version = $version
    }

    $registryProducts = @(
        @('UrlRewrite', 'SOFTWARE\Microsoft\IIS Extensions\URL Rewrite', 'RewriteModule'),
        @('ARR', 'SOFTWARE\Microsoft\IIS Extensions\Application Request Routing', 'ApplicationRequestRouting')
    )
    foreach ($product in $registryProducts) {
        $keyExists = Get-RegistryValue -Key $product[1]
        $version = $null
        if ($keyExists) {
            $raw = Get-RegistryValue -Key $product[1] -Name 'Version'
            if ($null -ne $raw -and ([string]$raw).Length -gt 0) { $version = [string]$raw }
        }
        $state[$product[0]] = [ordered]@{
            installed = $keyExists -or ($GlobalModules -contains $product[2])
            version = $version
        }
    }
    return $state
}

function Get-HostState {
    <#
    .SYNOPSIS
    Print the whole state of the host the project manages, as one line of JSON.
    .PARAMETER Json
    {"digest_key": "<base64>", "acl_paths": ["C:\\sites\\api", ...], "cert_stores": ["My",
    "WebHosting", ...], "release_roots": ["C:\\sites\\api"], "python_versions": ["3.12"]};
    digest_key (base64 of at least 16 bytes: the key of the secret digests) is required, the
    rest optional (default: empty lists, so no ACL, certificate, release root or Python is read).
    .OUTPUTS
    One line: {computer_name, reboot_pending, features, extensions, iis, certificates, acls,
    pythons, releases} as described in docs/remote-functions.md ("pythons" and "releases" are
    built by 85-python.ps1 and 90-release-state.ps1; empty objects when not asked). "iis" is null
    until the Web-Server feature is installed (and Microsoft.Web.Administration.dll exists). Secret values (environment variable values,
    passwords) appear only as ConvertTo-SecretDigest digests under digest_key.
    Throws when an argument has the wrong type, or when reading the IIS configuration fails.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [AllowEmptyString()]
        [string] $Json
    )
    $function = 'Get-HostState'
    $call = ConvertFrom-CallJson -Json $Json -Function $function
    $digestKey = ConvertFrom-DigestKey -Text (Get-CallValue -Call $call -Name 'digest_key' -Type string -Function $function) -Function $function
    $aclPaths = Get-CallValue -Call $call -Name 'acl_paths' -Type strings -Function $function
    $certStores = Get-CallValue -Call $call -Name 'cert_stores' -Type strings -Function $function
    $releaseRoots = Get-CallValue -Call $call -Name 'release_roots' -Type strings -Function $function
    $pythonVersions = Get-CallValue -Call $call -Name 'python_versions' -Type strings -Function $function

    $features = Get-InstalledFeatureNames
    $iisInstalled = ($features -contains 'Web-Server') -and (Test-IisInstalled)
    $iis = $null
    if ($iisInstalled) {
        $manager = New-IisServerManager -Function $function
        try {
            $configuration = $manager.GetApplicationHostConfiguration()
            $globalModules = Get-IisGlobalModuleNames -Configuration $configuration
            $extensions = Get-IisExtensionState -GlobalModules $globalModules
            $iis = Get-IisConfigState -Configuration $configuration -Extensions $extensions -DigestKey $digestKey -Function $function
            $iis['runtime'] = Get-IisRuntimeState -Manager $manager
        } finally {
            $manager.Dispose()
        }
    } else {
        $extensions = Get-IisExtensionState
    }

    $result = [ordered]@{
        computer_name = [string]$env:COMPUTERNAME
        reboot_pending = Test-RebootPending
        # Casts keep arrays plain .NET arrays: Windows PowerShell 5.1's ConvertTo-Json writes a
        # PSObject-wrapped array as {"value": [...], "Count": n} [R].
        features = [string[]]$features
        extensions = $extensions
        iis = $iis
        certificates = [object[]](Get-CertificateState -Stores $certStores -Function $function)
        acls = Get-PathAclState -Paths $aclPaths -Function $function
        pythons = Get-PythonState -Versions $pythonVersions -Function $function
        releases = Get-ReleaseRootState -Roots $releaseRoots -Function $function
    }
    Write-CallResult -InputObject $result
}
