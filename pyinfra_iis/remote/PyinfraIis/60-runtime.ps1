# PyinfraIis module, part 60: runtime state of pools and sites, and HTTP.sys SSL bindings through
# the RSCA methods of a binding (docs/remote-functions.md, "Change: runtime state"). Runtime state
# is not configuration: no CommitChanges() here.
# Docs: https://learn.microsoft.com/dotnet/api/microsoft.web.administration.applicationpool (State, Start, Stop, Recycle)
#       https://learn.microsoft.com/dotnet/api/microsoft.web.administration.site (State, Start, Stop, Bindings)
#       https://learn.microsoft.com/dotnet/api/microsoft.web.administration.configurationelement.methods
#       https://learn.microsoft.com/dotnet/api/microsoft.web.administration.configurationmethod.createinstance
#       https://learn.microsoft.com/dotnet/api/microsoft.web.administration.configurationmethodinstance.execute
# The RSCA methods AddSslCertificate / RebindSslCertificate (input certificateHash,
# certificateStoreName) and RemoveSslCertificate of <binding> are declared in
# %windir%\System32\inetsrv\config\schema\rscaext.xml (tests/data/iis-runtime-schema).

# Start() throws 0x800710D8 until WAS has read a just-committed pool or site: poll this long.
$script:StartWaitSeconds = 30

function Get-IisObjectState {
    # The typed State of a pool or site; "Unknown" when it cannot be read (WAS stopped, a site
    # without binding, a pool changing state).
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [object] $Object)
    try { return [string]$Object.State } catch { return 'Unknown' }
}

function Get-IisRuntimeState {
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [object] $Manager)
    $result = [ordered]@{ app_pools = [ordered]@{}; sites = [ordered]@{} }
    foreach ($pool in $Manager.ApplicationPools) { $result['app_pools'][[string]$pool.Name] = Get-IisObjectState -Object $pool }
    foreach ($site in $Manager.Sites) { $result['sites'][[string]$site.Name] = Get-IisObjectState -Object $site }
    return $result
}

function Invoke-IisObjectAction {
    # Start() or Stop(), retried every second while it throws 0x800710D8 ("The object identifier does
    # not represent a valid object": WAS has not read the new configuration yet), up to StartWaitSeconds.
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [object] $Object, [Parameter(Mandatory = $true)] [ValidateSet('Start', 'Stop')] [string] $Action,
        [Parameter(Mandatory = $true)] [string] $What)
    $deadline = [System.DateTime]::UtcNow.AddSeconds($script:StartWaitSeconds)
    while ($true) {
        try {
            if ($Action -eq 'Start') { [void]$Object.Start() } else { [void]$Object.Stop() }
            return
        } catch {
            $inner = $_.Exception
            while ($null -ne $inner.InnerException) { $inner = $inner.InnerException }
            $notReady = ($inner.HResult -eq 0x800710D8) -or ($inner.Message -match '800710D8')
            if (-not $notReady -or [System.DateTime]::UtcNow -ge $deadline) {
                throw ('{0}: cannot {1} it: {2}' -f $What, $Action.ToLowerInvariant(), $inner.Message)
            }
        }
        Start-Sleep -Seconds 1
    }
}

function Set-IisRuntimeState {
    # -Json {"app_pools": {name: "Started"|"Stopped"}, "sites": {...}} -> {"changed": ["app pool
    # api: Stopped -> Started", ...]}. Pools first, then sites (stops before starts); every name
    # is checked before anything changes.
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [AllowEmptyString()] [string] $Json)
    $function = 'Set-IisRuntimeState'
    $call = ConvertFrom-CallJson -Json $Json -Function $function
    $changed = New-Object -TypeName 'System.Collections.Generic.List[string]'
    $manager = New-IisServerManager -Function $function
    try {
        $work = New-Object -TypeName 'System.Collections.ArrayList'
        foreach ($group in @(@('app_pools', 'app pool'), @('sites', 'site'))) {
            $wanted = Get-CallValue -Call $call -Name $group[0] -Type object -Function $function
            $names = Get-CallMemberNames -Object $wanted
            $names = @($names | Sort-Object -Property { $wanted.PSObject.Properties[$_].Value -ceq 'Started' })
            foreach ($name in $names) {
                $desired = $wanted.PSObject.Properties[$name].Value
                if ($desired -cne 'Started' -and $desired -cne 'Stopped') { throw ('{0}: {1} {2}: state must be "Started" or "Stopped"' -f $function, $group[1], $name) }
                [void]$work.Add(@($group[1], (Get-IisNamedObject -Manager $manager -Kind $group[1] -Name $name -Function $function), $name, $desired))
            }
        }
        foreach ($entry in $work) {
            $current = Get-IisObjectState -Object $entry[1]
            if ($current -eq $entry[3] -or $current -eq $entry[3].Replace('ed', 'ing')) { continue }
            $what = '{0}: {1} {2}' -f $function, $entry[0], $entry[2]
            $action = 'Stop'
            if ($entry[3] -eq 'Started') { $action = 'Start' }
            Invoke-IisObjectAction -Object $entry[1] -Action $action -What $what
            [void]$changed.Add(('{0} {1}: {2} -> {3}' -f $entry[0], $entry[2], $current, $entry[3]))
        }
    } finally {
        $manager.Dispose()
    }
    Write-CallResult -InputObject ([ordered]@{ changed = $changed.ToArray() })
}

function Restart-IisAppPool {
    # -Json {"name": "api"} -> {"recycled": "api"}; a pool that is not Started is an error.
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [AllowEmptyString()] [string] $Json)
    $function = 'Restart-IisAppPool'
    $name = Get-CallValue -Call (ConvertFrom-CallJson -Json $Json -Function $function) -Name 'name' -Type string -Required -Function $function
    $manager = New-IisServerManager -Function $function
    try {
        $pool = Get-IisNamedObject -Manager $manager -Kind 'app pool' -Name $name -Function $function
        $state = Get-IisObjectState -Object $pool
        if ($state -ne 'Started') { throw ('{0}: app pool "{1}" is {2}, not Started: nothing to recycle' -f $function, $name, $state) }
        try { [void]$pool.Recycle() } catch { throw ('{0}: recycling app pool "{1}" failed: {2}' -f $function, $name, $_.Exception.Message) }
    } finally {
        $manager.Dispose()
    }
    Write-CallResult -InputObject ([ordered]@{ recycled = $name })
}

function Set-IisSslBinding {
    # -Json {"site", "binding_information", "action": "add"|"rebind"|"remove", "thumbprint", "store"}
    # -> {"site", "binding_information", "action"}: the committed https binding's RSCA method
    # (HTTP.sys picks hostnameport or ipport from the binding's sslFlags). The controller decides
    # the action from the fact's HTTP.sys table.
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [AllowEmptyString()] [string] $Json)
    $function = 'Set-IisSslBinding'
    $call = ConvertFrom-CallJson -Json $Json -Function $function
    $siteName = Get-CallValue -Call $call -Name 'site' -Type string -Required -Function $function
    $information = Get-CallValue -Call $call -Name 'binding_information' -Type string -Required -Function $function
    $action = Get-CallValue -Call $call -Name 'action' -Type string -Required -Function $function
    $method = @{ add = 'AddSslCertificate'; rebind = 'RebindSslCertificate'; remove = 'RemoveSslCertificate' }[$action]
    if ($null -eq $method) { throw ('{0}: "action" must be add, rebind or remove' -f $function) }
    $thumbprint = Get-CallValue -Call $call -Name 'thumbprint' -Type string -Function $function
    if ($action -ne 'remove' -and $thumbprint -notmatch '^[0-9A-Fa-f]{40}$') { throw ('{0}: "thumbprint" must be 40 hex digits' -f $function) }
    $store = Get-CallValue -Call $call -Name 'store' -Type string -Default 'My' -Function $function
    $manager = New-IisServerManager -Function $function
    try {
        $site = Get-IisNamedObject -Manager $manager -Kind 'site' -Name $siteName -Function $function
        $binding = @($site.Bindings | Where-Object -FilterScript { $_.Protocol -eq 'https' -and $_.BindingInformation -eq $information }) | Select-Object -First 1
        if ($null -eq $binding) { throw ('{0}: site "{1}" has no https binding "{2}": commit it with Set-IisConfig first' -f $function, $siteName, $information) }
        # A re-sent add (reply lost) finds its certificate bound: typed Binding.CertificateHash, in try/catch.
        $bound = ''
        try { $bound = [System.BitConverter]::ToString([byte[]]$binding.CertificateHash).Replace('-', '') } catch { $bound = '' }
        if ($action -eq 'add' -and $bound -eq $thumbprint) { $method = $null }
        if ($null -ne $method) { $instance = $binding.Methods[$method].CreateInstance() }
        if ($null -ne $method -and $action -ne 'remove') {
            # ps51-ignore: RSCA-ATTRIBUTE the RSCA method's own <inputElement> (rscaext.xml), not the binding's attributes
            $instance.Input.SetAttributeValue('certificateHash', $thumbprint.ToUpperInvariant()); $instance.Input.SetAttributeValue('certificateStoreName', $store)
        }
        if ($null -ne $method) { try { $instance.Execute() } catch { throw ('{0}: {1} on site "{2}" binding "{3}" failed: {4}' -f $function, $method, $siteName, $information, $_.Exception.Message) } }
    } finally {
        $manager.Dispose()
    }
    Write-CallResult -InputObject ([ordered]@{ site = $siteName; binding_information = $information; action = $action })
}
