# PyinfraIis module, part 93: Switch-Release, a site moved to a complete release (part 91), checked
# (part 92), and moved back when it is not healthy.
#
# Contract: docs/remote-functions.md, "Releases"; design.md, "Releases".
# Site.Applications, Application.VirtualDirectories, VirtualDirectory.PhysicalPath,
# ServerManager.CommitChanges, ApplicationPool.Recycle / Start [V]:
# https://learn.microsoft.com/dotnet/api/microsoft.web.administration.application.virtualdirectories
# https://learn.microsoft.com/dotnet/api/microsoft.web.administration.applicationpool
# Setting physicalPath restarts the application by itself (field notes, IIS); the pool is also
# recycled so the new process starts now, not on the next request [I].
#
# One CommitChanges() per configuration change: Switch-Release commits the new physicalPath once,
# and, only when the health check fails, commits the restore as a second, separate change.

function Get-SiteRootPath {
    <#
    .SYNOPSIS
    Return the physicalPath of a site's root virtual directory (application "/", vdir "/") as
    written in applicationHost.config, after checking that the site and the pool exist and that
    the pool is not Stopped.
    .OUTPUTS
    [string] (may hold %VARIABLES%; '' when unset). Throws when the site, its root application or
    the pool does not exist, or the pool is Stopped.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Site,
        [Parameter(Mandatory = $true)]
        [string] $AppPool,
        [string] $Function = 'remote call'
    )
    $manager = New-IisServerManager -Function $Function
    try {
        $siteObject = Get-IisNamedObject -Manager $manager -Kind 'site' -Name $Site -Function $Function
        $pool = Get-IisNamedObject -Manager $manager -Kind 'app pool' -Name $AppPool -Function $Function
        if ((Get-IisObjectState -Object $pool) -eq 'Stopped') {
            throw ('{0}: app pool "{1}" is stopped: start it before switching (Set-IisRuntimeState)' -f $Function, $AppPool)
        }
        $directory = Get-SiteRootDirectory -SiteObject $siteObject -Site $Site -Function $Function
        return [string]$directory.PhysicalPath
    } finally {
        $manager.Dispose()
    }
}

function Get-SiteRootDirectory {
    <#
    .SYNOPSIS
    Return the root VirtualDirectory ("/" of application "/") of a Microsoft.Web.Administration Site.
    .OUTPUTS
    Microsoft.Web.Administration.VirtualDirectory. Throws when the site has no root application or
    root virtual directory.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [object] $SiteObject,
        [Parameter(Mandatory = $true)]
        [string] $Site,
        [string] $Function = 'remote call'
    )
    $application = $SiteObject.Applications['/']
    if ($null -eq $application) {
        throw ('{0}: site "{1}" has no root application "/"' -f $Function, $Site)
    }
    $directory = $application.VirtualDirectories['/']
    if ($null -eq $directory) {
        throw ('{0}: site "{1}" has no root virtual directory "/"' -f $Function, $Site)
    }
    return $directory
}

function Set-SiteRootPath {
    <#
    .SYNOPSIS
    Set the physicalPath of a site's root virtual directory, with ONE CommitChanges().
    .PARAMETER Path
    The new physicalPath.
    .OUTPUTS
    Nothing. Throws when the site is gone or IIS refuses the change (then nothing is written).
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Site,
        [Parameter(Mandatory = $true)]
        [string] $Path,
        [string] $Function = 'remote call'
    )
    $manager = New-IisServerManager -Function $Function
    try {
        $siteObject = Get-IisNamedObject -Manager $manager -Kind 'site' -Name $Site -Function $Function
        $directory = Get-SiteRootDirectory -SiteObject $siteObject -Site $Site -Function $Function
        $directory.PhysicalPath = $Path
        $manager.CommitChanges()
    } finally {
        $manager.Dispose()
    }
}

function Restart-ReleaseAppPool {
    <#
    .SYNOPSIS
    Make an application pool start a new worker process: Recycle() when it is Started (runtime
    state, no CommitChanges()).
    .OUTPUTS
    [string] what was done: "recycled", or "not recycled (<state>)" for any other state.
    Throws when the pool does not exist or IIS refuses.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $AppPool,
        [string] $Function = 'remote call'
    )
    $manager = New-IisServerManager -Function $Function
    try {
        $pool = Get-IisNamedObject -Manager $manager -Kind 'app pool' -Name $AppPool -Function $Function
        $state = Get-IisObjectState -Object $pool
        if ($state -eq 'Started') {
            [void]$pool.Recycle()
            return 'recycled'
        }
        return ('not recycled ({0})' -f $state)
    } finally {
        $manager.Dispose()
    }
}

function Get-ReleaseVersionOfPath {
    <#
    .SYNOPSIS
    Return the release version a physicalPath points at (<root>\releases\<version>, %VARIABLES%
    expanded, compared case-insensitively), or Fallback (default $null) when it points elsewhere.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [AllowEmptyString()]
        [string] $Path,
        [Parameter(Mandatory = $true)]
        [string] $Releases,
        [AllowNull()]
        [object] $Fallback = $null
    )
    $expanded = [System.Environment]::ExpandEnvironmentVariables($Path).TrimEnd('\')
    $parent = [System.IO.Path]::GetDirectoryName($expanded)
    if ($expanded.Length -gt 0 -and [string]::Equals($parent, $Releases, [System.StringComparison]::OrdinalIgnoreCase)) {
        return [System.IO.Path]::GetFileName($expanded)
    }
    return $Fallback
}

function Switch-Release {
    <#
    .SYNOPSIS
    Move a site to a complete release, check its health through the IIS binding, and go back to
    the previous release when it is not healthy.
    .PARAMETER Json
    {"root", "version", "site", "app_pool", "health": {"url": "https://127.0.0.1:443/healthz",
    "host": "api.example.com", "deadline_seconds": 1..3600, "expect_status": 200 (default)}}.
    .OUTPUTS
    One line {"switched": bool, "from": version or null, "to": version, "health": {"status",
    "body" (first 2 KB), "seconds"}}. switched is false when the site's root already points at
    the release and it answers healthy (release-state.json's current is brought in line if it
    disagrees). Otherwise: physicalPath := <root>\releases\<version> (one CommitChanges; skipped
    when it already points there but is unhealthy), the pool is recycled, and the health URL is
    requested until it answers expect_status or the deadline (seconds, counted from the change)
    passes. Healthy: release-state.json gets previous := current (when current changes), current
    := version and a history entry {at, from, to, ok: true}.
    Throws, changing nothing, when the release is not complete, the site or pool does not exist,
    the pool is Stopped (start it first: Set-IisRuntimeState), or an argument is invalid. Throws
    when the release is unhealthy: physicalPath is restored to what it was (a second, separate
    CommitChanges) and the pool recycled, the attempt is recorded in the history (ok: false,
    status), and the message holds the last status (or network error), the first 2 KB of the body
    and the last 30 lines of the newest log in <root>\logs.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [AllowEmptyString()]
        [string] $Json
    )
    $function = 'Switch-Release'
    $call = ConvertFrom-CallJson -Json $Json -Function $function
    $root = Get-ReleaseRootArgument -Call $call -Function $function
    $version = Get-CallValue -Call $call -Name 'version' -Type string -Required -Function $function
    $site = Get-CallValue -Call $call -Name 'site' -Type string -Required -Function $function
    $appPool = Get-CallValue -Call $call -Name 'app_pool' -Type string -Required -Function $function
    Assert-ReleaseVersion -Version $version -Function $function
    $health = Get-ReleaseHealthSettings -Call $call -Function $function
    $layout = Get-ReleaseLayout -Root $root
    $target = Join-Path -Path $layout['releases'] -ChildPath $version
    if (-not (Test-ReleaseComplete -Folder $target)) {
        throw ('{0}: release {1} is not complete ({2} is missing or unfinished): run Install-Release first' -f $function, $version, $target)
    }
    $state = Read-ReleaseState -Path $layout['state'] -Function $function
    $oldPath = Get-SiteRootPath -Site $site -AppPool $appPool -Function $function
    # The release the site serves now: from its physicalPath; release-state.json's current when
    # the path is not a release folder (first deploy onto a placeholder folder).
    $served = Get-ReleaseVersionOfPath -Path $oldPath -Releases $layout['releases']
    $from = $served
    if ($null -eq $from) { $from = $state['current'] }

    if ($served -ceq $version) {
        $answer = Wait-ReleaseHealthy -Health $health -Clock ([System.Diagnostics.Stopwatch]::StartNew())
        if ($answer['ok']) {
            if ($state['current'] -cne $version) {
                $state['previous'] = $state['current']
                $state['current'] = $version
                Write-ReleaseState -Path $layout['state'] -State $state -Function $function
            }
            Write-CallResult -InputObject (New-SwitchResult -Switched $false -From $version -To $version -Answer $answer)
            return
        }
        # Already there but unhealthy: recycling is all that is left to try (nothing to restore).
    } else {
        try {
            Set-SiteRootPath -Site $site -Path $target -Function $function
        } catch {
            throw ('{0}: setting the physicalPath of site {1} to {2} failed, nothing was changed: {3}' -f $function, $site, $target, $_.Exception.Message)
        }
    }
    $clock = [System.Diagnostics.Stopwatch]::StartNew()
    try {
        $restart = 'app pool {0} {1}' -f $appPool, (Restart-ReleaseAppPool -AppPool $appPool -Function $function)
    } catch {
        # The physicalPath change restarts the app anyway (field notes, IIS): the health check decides.
        $restart = 'recycling app pool {0} failed: {1}' -f $appPool, $_.Exception.Message
    }
    $answer = Wait-ReleaseHealthy -Health $health -Clock $clock

    if ($answer['ok']) {
        if ($state['current'] -cne $version) {
            $state['previous'] = $state['current']
        }
        $state['current'] = $version
        $state['history'].Add((New-ReleaseHistoryEntry -From $from -To $version -Ok $true))
        Write-ReleaseState -Path $layout['state'] -State $state -Function $function
        Write-CallResult -InputObject (New-SwitchResult -Switched $true -From $from -To $version -Answer $answer)
        return
    }

    # Unhealthy: put the previous release back, record the attempt, and fail with the evidence.
    $logTail = Get-NewestLogTail -Folder $layout['logs'] -Count $script:ReleaseLogTailLines
    $restored = Restore-SiteRootPath -Site $site -AppPool $appPool -OldPath $oldPath -Target $target -Function $function
    $state['history'].Add((New-ReleaseHistoryEntry -From $from -To $version -Ok $false -Status $answer['status']))
    $stateNote = ''
    try {
        Write-ReleaseState -Path $layout['state'] -State $state -Function $function
    } catch {
        $stateNote = ' (' + $_.Exception.Message + ')'
    }
    throw ('{0}: release {1} is not healthy on site {2} ({3}); {4}{5}.{6}{7}{8}Newest log {9}' -f $function, $version, $site, $restart, $restored, $stateNote, "`n", (Format-HealthAnswer -Answer $answer -Health $health), "`n", $logTail)
}

function New-SwitchResult {
    <#
    .SYNOPSIS
    The result of Switch-Release: {switched, from, to, health: {status, body, seconds}}.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [bool] $Switched,
        [AllowNull()]
        [object] $From,
        [Parameter(Mandatory = $true)]
        [string] $To,
        [Parameter(Mandatory = $true)]
        [System.Collections.IDictionary] $Answer
    )
    return [ordered]@{
        switched = $Switched
        from = $From
        to = $To
        health = [ordered]@{ status = $Answer['status']; body = $Answer['body']; seconds = $Answer['seconds'] }
    }
}

function Restore-SiteRootPath {
    <#
    .SYNOPSIS
    After a failed health check, set the site's root physicalPath back to OldPath (one
    CommitChanges) and recycle the pool. Never throws: what happened is returned for the error
    message.
    .PARAMETER OldPath
    physicalPath before the switch ('' when unset: nothing is restored).
    .PARAMETER Target
    The release folder switched to (equal to OldPath: nothing to restore).
    .OUTPUTS
    [string] e.g. "physicalPath restored to C:\sites\api\releases\1.1.0, app pool api recycled".
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Site,
        [Parameter(Mandatory = $true)]
        [string] $AppPool,
        [Parameter(Mandatory = $true)]
        [AllowEmptyString()]
        [string] $OldPath,
        [Parameter(Mandatory = $true)]
        [string] $Target,
        [string] $Function = 'remote call'
    )
    if ([string]::IsNullOrEmpty($OldPath)) {
        return 'the site had no physicalPath before, so nothing was restored'
    }
    if ([string]::Equals([System.Environment]::ExpandEnvironmentVariables($OldPath).TrimEnd('\'), $Target, [System.StringComparison]::OrdinalIgnoreCase)) {
        return 'the site already served this release, so there was nothing to restore'
    }
    try {
        Set-SiteRootPath -Site $Site -Path $OldPath -Function $Function
    } catch {
        return ('RESTORING physicalPath {0} FAILED: {1}' -f $OldPath, $_.Exception.Message)
    }
    $restored = 'physicalPath restored to {0}' -f $OldPath
    try {
        return ('{0}, app pool {1} {2}' -f $restored, $AppPool, (Restart-ReleaseAppPool -AppPool $AppPool -Function $Function))
    } catch {
        return ('{0}, recycling app pool {1} failed: {2}' -f $restored, $AppPool, $_.Exception.Message)
    }
}
