# PyinfraIis module, part 40: IIS extensions from MSI packages (docs/remote-functions.md,
# "Change: IIS extensions from MSI"). msiexec runs through Invoke-HostProgram (part 15).
# Docs: https://learn.microsoft.com/windows/win32/msi/command-line-options (msiexec /i /qn /norestart /l*v)
#       https://learn.microsoft.com/windows/win32/msi/error-codes (0, 1618, 1641, 3010)
#       https://learn.microsoft.com/powershell/module/microsoft.powershell.utility/invoke-webrequest
# msiexec writes its verbose log in UTF-16LE, hence -Encoding Unicode for the tail.

$script:MsiFolder = 'C:\ProgramData\pyinfra-iis\msi'
$script:MsiProducts = @('HttpPlatformHandler', 'UrlRewrite', 'ARR')
# 1618 (ERROR_INSTALL_ALREADY_RUNNING: another installation, e.g. Windows Update, holds the
# Windows Installer mutex) is retried: 5 more tries after 10, 20, 40, 80, 160 seconds.
$script:MsiBusyRetries = 5
$script:MsiBusyFirstDelaySeconds = 10

function Copy-MsiPackage {
    # Bring the MSI into the administrators-only folder C:\ProgramData\pyinfra-iis\msi (Initialize-
    # ProtectedFolder, part 80): download an https:// URL, copy a UNC or local path.
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [string] $Source, [string] $Function = 'remote call')
    $isUrl = $Source -match '^[A-Za-z][A-Za-z0-9+.-]*://'
    if ($isUrl -and $Source -notmatch '^https://') { throw ('{0}: an MSI source URL must use https' -f $Function) }
    if (-not $isUrl -and -not [System.IO.Path]::IsPathRooted($Source)) {
        throw ('{0}: MSI source must be an absolute path, a UNC path or an https:// URL, got "{1}"' -f $Function, $Source)
    }
    $leaf = [System.IO.Path]::GetFileName($Source)
    if ($isUrl) { $leaf = [System.Uri]::UnescapeDataString((New-Object -TypeName 'System.Uri' -ArgumentList $Source).Segments[-1]) }
    if ($leaf.IndexOfAny([System.IO.Path]::GetInvalidFileNameChars()) -ge 0 -or -not $leaf.EndsWith('.msi', [System.StringComparison]::OrdinalIgnoreCase)) {
        throw ('{0}: MSI source must name a .msi file, got "{1}"' -f $Function, $leaf)
    }
    [void](Initialize-ProtectedFolder -Path $script:MsiFolder -Function $Function)
    $target = Join-Path -Path $script:MsiFolder -ChildPath $leaf
    if ($isUrl) {
        Enable-ModernTls
        $shown = New-Object -TypeName 'System.Uri' -ArgumentList $Source  # no user info or query (SAS tokens) in errors
        try { Invoke-WebRequest -Uri $Source -OutFile $target -UseBasicParsing } catch { throw ('{0}: cannot download {1}://{2}{3}: {4}' -f $Function, $shown.Scheme, $shown.Host, $shown.AbsolutePath, $_.Exception.Message) }
    } elseif (-not (Test-Path -LiteralPath $Source -PathType Leaf)) {
        throw ('{0}: MSI source {1} does not exist or is not a file' -f $Function, $Source)
    } elseif (-not [string]::Equals([System.IO.Path]::GetFullPath($Source), $target, [System.StringComparison]::OrdinalIgnoreCase)) {
        Copy-Item -LiteralPath $Source -Destination $target -Force
    }
    return $target
}

function Get-IisGlobalModuleNames {
    # Names of system.webServer/globalModules, read from applicationHost.config's XML (XPath).
    # Docs: https://learn.microsoft.com/dotnet/api/system.xml.xmlnode.selectnodes
    [CmdletBinding()]
    param()
    if (-not (Test-IisInstalled)) { return , @() }
    $document = New-Object -TypeName 'System.Xml.XmlDocument'
    $document.Load((Get-ApplicationHostConfigPath))
    return , [string[]]@($document.SelectNodes('/configuration/system.webServer/globalModules/add/@name') | ForEach-Object -Process { $_.get_Value() })
}

function Install-MsiProduct {
    # -Json {"product", "source", "sha256"} -> {"product", "exit_code", "restart_needed", "log",
    # "changed", "attempts"}. A detected product is left alone (changed false). The hash is
    # checked before msiexec runs; exit 0 / 3010 / 1641 succeed, 1618 is retried, others throw
    # with the log's last 30 lines.
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [AllowEmptyString()] [string] $Json)
    $function = 'Install-MsiProduct'
    $call = ConvertFrom-CallJson -Json $Json -Function $function
    $product = Get-CallValue -Call $call -Name 'product' -Type string -Required -Function $function
    $source = Get-CallValue -Call $call -Name 'source' -Type string -Required -Function $function
    $sha256 = Get-CallValue -Call $call -Name 'sha256' -Type string -Required -Function $function
    if ($script:MsiProducts -cnotcontains $product) {
        throw ('{0}: unknown product "{1}"; expected one of {2}' -f $function, $product, [string]::Join(', ', $script:MsiProducts))
    }
    if ($sha256 -notmatch '^[0-9A-Fa-f]{64}$') { throw ('{0}: "sha256" must be 64 hex digits' -f $function) }
    $log = Join-Path -Path $script:InstallerLogFolder -ChildPath ($product + '.log')
    $modules = Get-IisGlobalModuleNames
    $moduleOf = @{ HttpPlatformHandler = 'httpPlatformHandler'; UrlRewrite = 'RewriteModule'; ARR = 'ApplicationRequestRouting' }
    $extensions = Get-IisExtensionState
    if ($extensions[$product]['installed'] -or $modules -contains $moduleOf[$product]) {
        Write-CallResult -InputObject ([ordered]@{ product = $product; exit_code = 0; restart_needed = $false; log = $log; changed = $false; attempts = 0 })
        return
    }
    if ($product -eq 'ARR' -and -not ($extensions['UrlRewrite']['installed'] -or $modules -contains 'RewriteModule')) {
        throw ('{0}: ARR needs URL Rewrite, which is not installed: install UrlRewrite first' -f $function)
    }
    $package = Copy-MsiPackage -Source $source -Function $function
    Assert-FileSha256 -Path $package -Expected $sha256 -RemoveMismatch -Function $function
    [void](Initialize-ProtectedFolder -Path $script:InstallerLogFolder -Function $function)
    $msiexec = [System.IO.Path]::Combine([System.Environment]::SystemDirectory, 'msiexec.exe')
    $delay = $script:MsiBusyFirstDelaySeconds
    for ($attempt = 1; ; $attempt++) {
        $run = Invoke-HostProgram -FilePath $msiexec -Arguments @('/i', $package, '/qn', '/norestart', '/l*v', $log) -TimeoutSeconds $script:InstallerTimeoutSeconds -Step ('msiexec /i {0}' -f $package) -Function $function
        $exitCode = [int]$run['exit_code']
        if ($exitCode -ne 1618 -or $attempt -gt $script:MsiBusyRetries) { break }
        Start-Sleep -Seconds $delay
        $delay = $delay * 2
    }
    if ($exitCode -ne 0 -and $exitCode -ne 3010 -and $exitCode -ne 1641) {
        throw ('{0}: msiexec /i {1} failed with exit code {2} after {3} attempt(s); last 30 lines of {4}:{5}{6}' -f $function, $package, $exitCode, $attempt, $log, "`n", (Get-TextFileTail -Path $log -Count 30 -Encoding Unicode))
    }
    Write-CallResult -InputObject ([ordered]@{ product = $product; exit_code = $exitCode; restart_needed = $exitCode -ne 0; log = $log; changed = $true; attempts = $attempt })
}
