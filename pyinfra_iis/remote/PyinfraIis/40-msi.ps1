# PyinfraIis module, part 40: IIS extensions installed from MSI packages (HttpPlatformHandler,
# URL Rewrite, ARR).
#
# Contract: docs/remote-functions.md, "Change: IIS extensions from MSI".
# Field notes (URL Rewrite and ARR): msiexec /i X.msi /qn /norestart /l*v LOG; exit 3010 = success,
# reboot required; 1641 = success, reboot started [V]; install URL Rewrite before ARR [R].
# msiexec writes its verbose log in UTF-16LE ("Unicode") [R], so the log is read with -Encoding Unicode.
# msiexec runs through Invoke-HostProgram (part 15), with a bounded wait.

# Where MSI packages live on the host (contract; their logs: $script:InstallerLogFolder).
$script:MsiFolder = 'C:\ProgramData\pyinfra-iis\msi'

# Products the function installs (contract).
$script:MsiProducts = @('HttpPlatformHandler', 'UrlRewrite', 'ARR')

function Get-MsiSourceLeaf {
    <#
    .SYNOPSIS
    Return the file name of an MSI source: the last segment of an https:// URL or of a path.
    .OUTPUTS
    [string]. Throws when the name does not end in .msi or holds characters a file name cannot.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Source,
        [string] $Function = 'remote call'
    )
    if ($Source -match '^[A-Za-z][A-Za-z0-9+.-]*://') {
        $uri = New-Object -TypeName 'System.Uri' -ArgumentList $Source
        if ($uri.Scheme -ne 'https') {
            throw ('{0}: MSI source URL must use https, got {1}' -f $Function, $uri.Scheme)
        }
        $leaf = [System.Uri]::UnescapeDataString($uri.Segments[-1])
    } else {
        $leaf = [System.IO.Path]::GetFileName($Source)
    }
    if ($leaf.IndexOfAny([System.IO.Path]::GetInvalidFileNameChars()) -ge 0 -or -not $leaf.EndsWith('.msi', [System.StringComparison]::OrdinalIgnoreCase)) {
        throw ('{0}: MSI source must name a .msi file, got "{1}"' -f $Function, $leaf)
    }
    return $leaf
}

function Copy-MsiPackage {
    <#
    .SYNOPSIS
    Bring the MSI to C:\ProgramData\pyinfra-iis\msi\<leaf>: download an https:// URL
    (Invoke-WebRequest -UseBasicParsing, TLS 1.2 enabled), copy a UNC or local path (Copy-Item);
    a source already at that place is used as it is.
    .OUTPUTS
    [string] the local path. Throws when the source cannot be read.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Source,
        [string] $Function = 'remote call'
    )
    $leaf = Get-MsiSourceLeaf -Source $Source -Function $Function
    [void][System.IO.Directory]::CreateDirectory($script:MsiFolder)
    $target = Join-Path -Path $script:MsiFolder -ChildPath $leaf
    if ($Source -match '^https://') {
        Enable-ModernTls
        try {
            Invoke-WebRequest -Uri $Source -OutFile $target -UseBasicParsing
        } catch {
            throw ('{0}: cannot download {1}: {2}' -f $Function, $Source, $_.Exception.Message)
        }
        return $target
    }
    if (-not [System.IO.Path]::IsPathRooted($Source)) {
        throw ('{0}: MSI source must be an absolute path, a UNC path or an https:// URL, got "{1}"' -f $Function, $Source)
    }
    if (-not (Test-Path -LiteralPath $Source -PathType Leaf)) {
        throw ('{0}: MSI source {1} does not exist or is not a file' -f $Function, $Source)
    }
    $full = [System.IO.Path]::GetFullPath($Source)
    if (-not [string]::Equals($full, [System.IO.Path]::GetFullPath($target), [System.StringComparison]::OrdinalIgnoreCase)) {
        Copy-Item -LiteralPath $Source -Destination $target -Force
    }
    return $target
}

function Install-MsiProduct {
    <#
    .SYNOPSIS
    Install an IIS extension from its MSI, after checking the package's SHA-256.
    .PARAMETER Json
    {"product": "HttpPlatformHandler" | "UrlRewrite" | "ARR", "source": path on the host, UNC path
    or https:// URL, "sha256": 64 hex digits}.
    .OUTPUTS
    One line {"product", "exit_code", "restart_needed", "log", "changed"}. A product that
    Get-IisExtensionState already detects is left alone (msiexec would run a repair):
    exit_code 0, changed false, as in the simulator. Otherwise changed is true and
    exit 0 -> restart_needed false;
    3010 (reboot required) and 1641 (reboot started) -> restart_needed true. The log is
    C:\ProgramData\pyinfra-iis\logs\<product>.log.
    Throws before msiexec runs when the product is unknown, ARR is asked without URL Rewrite, the
    source cannot be read or its SHA-256 differs (expected and actual digests in the message); after
    msiexec, any other exit code throws with the code and the last 30 lines of the log.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [AllowEmptyString()]
        [string] $Json
    )
    $function = 'Install-MsiProduct'
    $call = ConvertFrom-CallJson -Json $Json -Function $function
    $product = Get-CallValue -Call $call -Name 'product' -Type string -Required -Function $function
    $source = Get-CallValue -Call $call -Name 'source' -Type string -Required -Function $function
    $sha256 = Get-CallValue -Call $call -Name 'sha256' -Type string -Required -Function $function
    if ($script:MsiProducts -cnotcontains $product) {
        throw ('{0}: unknown product "{1}"; expected one of {2}' -f $function, $product, [string]::Join(', ', $script:MsiProducts))
    }
    if ($sha256 -notmatch '^[0-9A-Fa-f]{64}$') {
        throw ('{0}: "sha256" must be 64 hex digits' -f $function)
    }
    $log = Join-Path -Path $script:InstallerLogFolder -ChildPath ($product + '.log')
    $modules = @()
    if (Test-IisInstalled) {
        $manager = New-IisServerManager -Function $function
        try {
            $modules = Get-IisGlobalModuleNames -Configuration $manager.GetApplicationHostConfiguration()
        } finally {
            $manager.Dispose()
        }
    }
    $extensions = Get-IisExtensionState -GlobalModules $modules
    if ($extensions[$product]['installed']) {
        Write-CallResult -InputObject ([ordered]@{ product = $product; exit_code = 0; restart_needed = $false; log = $log; changed = $false })
        return
    }
    if ($product -eq 'ARR') {
        if (-not $extensions['UrlRewrite']['installed']) {
            throw ('{0}: ARR needs URL Rewrite, which is not installed: install UrlRewrite first' -f $function)
        }
    }

    $package = Copy-MsiPackage -Source $source -Function $function
    Assert-FileSha256 -Path $package -Expected $sha256 -RemoveMismatch -Function $function
    [void][System.IO.Directory]::CreateDirectory($script:InstallerLogFolder)
    # Paths come from Copy-MsiPackage (fixed folder, checked leaf name).
    $msiexec = [System.IO.Path]::Combine([string]$env:windir, 'System32', 'msiexec.exe')
    $msiArguments = @('/i', $package, '/qn', '/norestart', '/l*v', $log)
    $run = Invoke-HostProgram -FilePath $msiexec -Arguments $msiArguments -TimeoutSeconds $script:InstallerTimeoutSeconds -Step ('msiexec /i {0} (log {1})' -f $package, $log) -Function $function
    $exitCode = $run['exit_code']
    if ($exitCode -ne 0 -and $exitCode -ne 3010 -and $exitCode -ne 1641) {
        throw ('{0}: msiexec /i {1} failed with exit code {2}; last 30 lines of {3}:{4}{5}' -f $function, $package, $exitCode, $log, "`n", (Get-TextFileTail -Path $log -Count 30 -Encoding Unicode))
    }
    Write-CallResult -InputObject ([ordered]@{
            product = $product
            exit_code = $exitCode
            restart_needed = $exitCode -ne 0
            log = $log
            changed = $true
        })
}
