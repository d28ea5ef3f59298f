# PyinfraIis module, part 93: Switch-Release, ONE host-side transaction: physicalPath and the
# app secrets in one CommitChanges, recycle, health check, restore on failure.

function Set-ReleaseConfig {
    # ONE CommitChanges: the site's root physicalPath, and pool environment variables (a $null
    # value removes one). Returns the previous values {path, environment: name -> value or $null};
    # -ReadOnly changes and commits nothing.
    # Docs: https://learn.microsoft.com/dotnet/api/microsoft.web.administration.servermanager.commitchanges
    # Docs: https://learn.microsoft.com/iis/configuration/system.applicationhost/applicationpools/add/environmentvariables/
    [CmdletBinding()]
    param([string] $Site, [string] $AppPool, [string] $Path, [hashtable] $Environment, [string] $Function, [switch] $ReadOnly)
    $manager = New-IisServerManager -Function $Function
    try {
        $siteObject = $manager.Sites[$Site]
        $pool = $manager.ApplicationPools[$AppPool]
        if ($null -eq $siteObject -or $null -eq $pool) { throw ('{0}: site "{1}" or app pool "{2}" does not exist' -f $Function, $Site, $AppPool) }
        $directory = $siteObject.Applications['/'].VirtualDirectories['/']
        $old = @{ path = $directory.PhysicalPath; environment = @{} }
        if (-not $ReadOnly) { $directory.PhysicalPath = $Path }
        $variables = $pool.GetCollection('environmentVariables')
        foreach ($name in $Environment.Keys) {
            $item = $null
            foreach ($candidate in $variables) { if ([string]$candidate['name'] -eq $name) { $item = $candidate } }
            $old['environment'][$name] = $null
            if ($null -ne $item) { $old['environment'][$name] = [string]$item['value'] }
            if ($ReadOnly) { continue }
            if ($null -eq $Environment[$name]) { if ($null -ne $item) { [void]$variables.Remove($item) } ; continue }
            if ($null -eq $item) { $item = $variables.CreateElement('add'); $item['name'] = $name; [void]$variables.Add($item) }
            $item['value'] = [string]$Environment[$name]
        }
        if (-not $ReadOnly) { $manager.CommitChanges() }
        return $old
    } finally { $manager.Dispose() }
}

function Restart-ReleasePool {
    # Recycle a started pool (runtime state through the typed API; no commit).
    # Docs: https://learn.microsoft.com/dotnet/api/microsoft.web.administration.applicationpool.recycle
    [CmdletBinding()]
    param([string] $AppPool, [string] $Function)
    $manager = New-IisServerManager -Function $Function
    try {
        $pool = $manager.ApplicationPools[$AppPool]
        $state = 'Unknown'
        try { $state = [string]$pool.State } catch { $state = 'Unknown' }
        if ($state -ne 'Started') { throw ('{0}: app pool {1} is {2}: start it before switching' -f $Function, $AppPool, $state) }
        [void]$pool.Recycle()
    } finally { $manager.Dispose() }
}

function Switch-Release {
    # {"site", "app_pool", "path": release folder (must hold the completion marker), "environment":
    #  {name: value}, "health": {url, host, certificate_hash, expect_version, expect_status,
    #  deadline_seconds, give_up_statuses}, "state_file", "state_ok", "state_failed", "logs": stdout log folder,
    #  "preflight": the start check, run before the commit (Invoke-ReleaseStartCheck)}
    # -> {"switched": bool, "health": {status, body, seconds}}: false when already so and healthy. Unhealthy: physicalPath and the
    # variables restored (one commit), recycle, state_failed written, and the error carries the
    # answer and the tail of the log the NEW process wrote (a file that did not exist before).
    # Docs: https://learn.microsoft.com/dotnet/api/system.io.directory.getfiles?view=netframework-4.8
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [AllowEmptyString()] [string] $Json)
    $function = 'Switch-Release'
    $call = ConvertFrom-CallJson -Json $Json -Function $function
    $site = Get-CallValue -Call $call -Name 'site' -Type string -Required -Function $function
    $pool = Get-CallValue -Call $call -Name 'app_pool' -Type string -Required -Function $function
    $path = Get-CallValue -Call $call -Name 'path' -Type string -Required -Function $function
    $health = Get-CallValue -Call $call -Name 'health' -Type object -Required -Function $function
    $variables = Get-CallValue -Call $call -Name 'environment' -Type object -Function $function
    $logs = Get-CallValue -Call $call -Name 'logs' -Type string -Required -Function $function
    $stateFile = Get-CallValue -Call $call -Name 'state_file' -Type string -Required -Function $function
    if (-not [System.IO.File]::Exists((Join-Path -Path $path -ChildPath $script:ReleaseCompleteMarker))) {
        throw ('{0}: {1} has no completion marker: it is not a complete release' -f $function, $path)
    }
    # Everything is read and checked BEFORE the commit: a bad value must not leave the site switched and unchecked.
    $stateOk = Get-CallValue -Call $call -Name 'state_ok' -Type string -Required -Function $function
    $stateFailed = Get-CallValue -Call $call -Name 'state_failed' -Type string -Required -Function $function
    [void](Get-CallValue -Call $health -Name 'url' -Type string -Required -Function $function)
    [void](Get-CallValue -Call $health -Name 'expect_status' -Type integer -Default 200 -Minimum 100 -Maximum 599 -Function $function)
    [void](Get-CallValue -Call $health -Name 'deadline_seconds' -Type integer -Default 120 -Minimum 1 -Maximum 7200 -Function $function)
    $environment = @{}
    foreach ($name in (Get-CallMemberNames -Object $variables)) {
        $value = $variables.$name
        $environment[$name] = $null  # JSON null removes the variable
        if ($null -ne $value) { $environment[$name] = [string]$value }
    }
    $before = @{}
    if ([System.IO.Directory]::Exists($logs)) { foreach ($file in [System.IO.Directory]::GetFiles($logs, '*.log')) { $before[$file] = $true } }
    # Already so (the same call re-sent after a lost reply): nothing committed or recycled if healthy.
    $now = Set-ReleaseConfig -Site $site -AppPool $pool -Path $path -Environment $environment -Function $function -ReadOnly
    $same = [string]::Equals([string]$now['path'], $path, [System.StringComparison]::OrdinalIgnoreCase)
    foreach ($name in $environment.Keys) { if ($now['environment'][$name] -cne $environment[$name]) { $same = $false } }
    if ($same) {
        $answer = Wait-ReleaseHealthy -Health $health -Function $function
        if ($answer['ok']) {
            Write-TextFile -Json (ConvertTo-Json -InputObject @{ path = $stateFile; text = $stateOk } -Depth 3 -Compress) | Out-Null
            Write-CallResult -InputObject ([ordered]@{ switched = $false; health = [ordered]@{ status = $answer['status']; body = $answer['body']; seconds = $answer['seconds'] } })
            return
        }
    }
    $preflight = Get-CallValue -Call $call -Name 'preflight' -Type object -Function $function
    if ($null -ne $preflight) {
        try { Assert-ReleaseStart -Check $preflight -Path $path -Function $function } catch { Write-TextFile -Json (ConvertTo-Json -InputObject @{ path = $stateFile; text = $stateFailed } -Depth 3 -Compress) | Out-Null; throw }
    }
    $old = Set-ReleaseConfig -Site $site -AppPool $pool -Path $path -Environment $environment -Function $function
    try {
        Restart-ReleasePool -AppPool $pool -Function $function
        $answer = Wait-ReleaseHealthy -Health $health -Function $function
    } catch {
        # Whatever fails after the commit goes through the restore below.
        $answer = @{ ok = $false; status = $null; body = ''; seconds = 0; error = $_.Exception.Message }
    }
    $public = [ordered]@{ status = $answer['status']; body = $answer['body']; seconds = $answer['seconds'] }
    if ($answer['ok']) {
        Write-TextFile -Json (ConvertTo-Json -InputObject @{ path = $stateFile; text = $stateOk } -Depth 3 -Compress) | Out-Null
        Write-CallResult -InputObject ([ordered]@{ switched = $true; health = $public })
        return
    }
    $tail = 'No new stdout log in {0}.' -f $logs
    $fresh = @()
    if ([System.IO.Directory]::Exists($logs)) { $fresh = @([System.IO.Directory]::GetFiles($logs, '*.log') | Where-Object -FilterScript { -not $before.ContainsKey($_) } | Sort-Object -Property { [System.IO.File]::GetCreationTimeUtc($_) }) }
    if ($fresh.Count -gt 0) { $tail = 'Last 30 lines of {0}:{1}{2}' -f $fresh[-1], "`n", (Get-TextFileTail -Path $fresh[-1] -Count 30) }
    $restored = 'physicalPath restored to {0}' -f $old['path']
    try {
        if (-not [string]::IsNullOrEmpty($old['path'])) { [void](Set-ReleaseConfig -Site $site -AppPool $pool -Path $old['path'] -Environment $old['environment'] -Function $function); Restart-ReleasePool -AppPool $pool -Function $function }
    } catch { $restored = 'RESTORING physicalPath {0} FAILED: {1}' -f $old['path'], $_.Exception.Message }
    Write-TextFile -Json (ConvertTo-Json -InputObject @{ path = $stateFile; text = $stateFailed } -Depth 3 -Compress) | Out-Null
    $expect = Get-CallValue -Call $health -Name 'expect_status' -Default 200 -Function $function
    throw ('{0} {1}: health check {2} failed after {3} s: expected {4}, got HTTP {5} ({6}); body: {7}{8}{9}.{8}{10}' -f $function, $path, $health.url, $answer['seconds'], $expect, $answer['status'], $answer['error'], $answer['body'], "`n", $restored, $tail)
}
