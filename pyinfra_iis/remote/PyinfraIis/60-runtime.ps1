# PyinfraIis module, part 60: runtime state of application pools and sites (started / stopped,
# recycle) through Microsoft.Web.Administration.
#
# Contract: docs/remote-functions.md, "Change: runtime state".
# ApplicationPool.Start()/Stop()/Recycle() and Site.Start()/Stop() return an ObjectState
# (Starting, Started, Stopping, Stopped, Unknown) [V]:
# https://learn.microsoft.com/dotnet/api/microsoft.web.administration.applicationpool
# https://learn.microsoft.com/dotnet/api/microsoft.web.administration.objectstate
# Runtime state is not configuration: no CommitChanges() here.
# Reading State throws when the Windows Process Activation Service is stopped, and for a site
# without an HTTP binding [R]; such states are reported as "Unknown".

function Get-IisObjectState {
    <#
    .SYNOPSIS
    Return the State of an application pool or site as a string, "Unknown" when it cannot be read.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [object] $Object
    )
    try {
        return [string]$Object.State
    } catch {
        return 'Unknown'
    }
}

function Get-IisRuntimeState {
    <#
    .SYNOPSIS
    Return {"app_pools": {name: state}, "sites": {name: state}} for Get-HostState.
    .PARAMETER Manager
    A Microsoft.Web.Administration.ServerManager.
    .OUTPUTS
    Ordered dictionary; states are ObjectState names.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [object] $Manager
    )
    $pools = [ordered]@{}
    foreach ($pool in $Manager.ApplicationPools) {
        $pools[[string]$pool.Name] = Get-IisObjectState -Object $pool
    }
    $sites = [ordered]@{}
    foreach ($site in $Manager.Sites) {
        $sites[[string]$site.Name] = Get-IisObjectState -Object $site
    }
    return [ordered]@{ app_pools = $pools; sites = $sites }
}

function Set-IisObjectState {
    <#
    .SYNOPSIS
    Start or stop one application pool or site when it is not already in (or going to) that state.
    .PARAMETER Object
    An ApplicationPool or Site.
    .PARAMETER Kind
    "app pool" or "site", for messages.
    .PARAMETER Desired
    "Started" or "Stopped".
    .OUTPUTS
    [string] the change ("app pool api: Stopped -> Started"), or $null when nothing changed.
    Throws when Start()/Stop() fails (for example a binding already in use).
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [object] $Object,
        [Parameter(Mandatory = $true)]
        [string] $Kind,
        [Parameter(Mandatory = $true)]
        [string] $Name,
        [Parameter(Mandatory = $true)]
        [string] $Desired
    )
    $current = Get-IisObjectState -Object $Object
    if ($Desired -eq 'Started') {
        if ($current -eq 'Started' -or $current -eq 'Starting') { return $null }
        try {
            [void]$Object.Start()
        } catch {
            throw ('{0} {1}: cannot start it ({2}): {3}' -f $Kind, $Name, $current, $_.Exception.Message)
        }
    } else {
        if ($current -eq 'Stopped' -or $current -eq 'Stopping') { return $null }
        try {
            [void]$Object.Stop()
        } catch {
            throw ('{0} {1}: cannot stop it ({2}): {3}' -f $Kind, $Name, $current, $_.Exception.Message)
        }
    }
    return ('{0} {1}: {2} -> {3}' -f $Kind, $Name, $current, $Desired)
}

function Set-IisRuntimeState {
    <#
    .SYNOPSIS
    Bring application pools and sites to the given runtime state: pools first (a site needs its
    pool), then sites, stopping before starting so a binding can move between sites in one call.
    Every name is checked before anything changes.
    .PARAMETER Json
    {"app_pools": {name: "Started" | "Stopped"}, "sites": {name: "Started" | "Stopped"}}; both
    optional.
    .OUTPUTS
    One line {"changed": ["app pool api: Stopped -> Started", "site api: Stopped -> Started", ...]}.
    Throws naming the pool or site when it does not exist, the state is not Started/Stopped, or
    starting/stopping fails (changes made before stay made: runtime state has no transaction).
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [AllowEmptyString()]
        [string] $Json
    )
    $function = 'Set-IisRuntimeState'
    $call = ConvertFrom-CallJson -Json $Json -Function $function
    $groups = @(
        @('app_pools', 'app pool', (Get-CallValue -Call $call -Name 'app_pools' -Type object -Function $function)),
        @('sites', 'site', (Get-CallValue -Call $call -Name 'sites' -Type object -Function $function))
    )
    foreach ($group in $groups) {
        foreach ($name in (Get-CallMemberNames -Object $group[2])) {
            $desired = $group[2].PSObject.Properties[$name].Value
            if ($desired -cne 'Started' -and $desired -cne 'Stopped') {
                throw ('{0}: {1} {2}: state must be "Started" or "Stopped"' -f $function, $group[1], $name)
            }
        }
    }
    $changed = New-Object -TypeName 'System.Collections.Generic.List[string]'
    $manager = New-IisServerManager -Function $function
    try {
        # [kind, object, name, desired] in the order they are applied.
        $work = New-Object -TypeName 'System.Collections.ArrayList'
        foreach ($group in $groups) {
            $names = Get-CallMemberNames -Object $group[2]
            if ($group[0] -eq 'sites') {
                $stops = @($names | Where-Object -FilterScript { $group[2].PSObject.Properties[$_].Value -ceq 'Stopped' })
                $starts = @($names | Where-Object -FilterScript { $group[2].PSObject.Properties[$_].Value -ceq 'Started' })
                $names = $stops + $starts
            }
            foreach ($name in $names) {
                try {
                    $object = Get-IisNamedObject -Manager $manager -Kind $group[1] -Name $name -Function $function
                } catch {
                    throw ($_.Exception.Message + '; nothing was changed')
                }
                [void]$work.Add(@($group[1], $object, $name, $group[2].PSObject.Properties[$name].Value))
            }
        }
        foreach ($entry in $work) {
            $change = Set-IisObjectState -Object $entry[1] -Kind $entry[0] -Name $entry[2] -Desired $entry[3]
            if ($null -ne $change) { $changed.Add($change) }
        }
    } finally {
        $manager.Dispose()
    }
    Write-CallResult -InputObject ([ordered]@{ changed = $changed.ToArray() })
}

function Restart-IisAppPool {
    <#
    .SYNOPSIS
    Recycle an application pool (a new worker process starts; overlapped unless the pool says
    disallowOverlappingRotation).
    .PARAMETER Json
    {"name": "api"}
    .OUTPUTS
    One line {"recycled": name}. Throws when the pool does not exist or is not Started (a stopped
    pool has no worker process to recycle: start it with Set-IisRuntimeState).
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [AllowEmptyString()]
        [string] $Json
    )
    $function = 'Restart-IisAppPool'
    $call = ConvertFrom-CallJson -Json $Json -Function $function
    $name = Get-CallValue -Call $call -Name 'name' -Type string -Required -Function $function
    $manager = New-IisServerManager -Function $function
    try {
        $pool = Get-IisNamedObject -Manager $manager -Kind 'app pool' -Name $name -Function $function
        $state = Get-IisObjectState -Object $pool
        if ($state -ne 'Started') {
            throw ('{0}: app pool "{1}" is {2}, not Started: nothing to recycle' -f $function, $name, $state)
        }
        try {
            [void]$pool.Recycle()
        } catch {
            throw ('{0}: recycling app pool "{1}" failed: {2}' -f $function, $name, $_.Exception.Message)
        }
    } finally {
        $manager.Dispose()
    }
    Write-CallResult -InputObject ([ordered]@{ recycled = $name })
}
