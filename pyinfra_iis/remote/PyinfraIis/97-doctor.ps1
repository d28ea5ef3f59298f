# PyinfraIis module, part 97: Get-DoctorState, RAW read-only data for deploys/doctor.py; pyinfra_iis/doctor decides.

function Get-DoctorTail {
    # The last (-Head: first) Count bytes of a file another process may hold open (HttpPlatformHandler's log).
    # Docs: https://learn.microsoft.com/dotnet/api/system.io.fileshare?view=netframework-4.8 https://learn.microsoft.com/dotnet/api/system.io.filestream.-ctor?view=netframework-4.8
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [string] $Path, [Parameter(Mandatory = $true)] [int] $Count, [switch] $Head)
    $stream = New-Object -TypeName 'System.IO.FileStream' -ArgumentList $Path, ([System.IO.FileMode]::Open), ([System.IO.FileAccess]::Read), ([System.IO.FileShare]::ReadWrite)
    try {
        if (-not $Head) { [void]$stream.Seek([math]::Max(0, $stream.Length - $Count), [System.IO.SeekOrigin]::Begin) }
        return [System.Text.Encoding]::UTF8.GetString((Read-StreamBytes -Stream $stream -Count $Count))
    } finally { $stream.Dispose() }
}

function Invoke-DoctorProbe {
    # One part of the doctor's read: its failure becomes {error} for that part alone, the other parts are still read.
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [scriptblock] $Probe)
    try { return , (& $Probe) } catch { return [ordered]@{ error = [string]$_.Exception.Message } }
}

function Get-DoctorFirewallRule {
    # Inbound rules of the ActiveStore (local and Group Policy) with a TCP or Any port filter, joined on filter InstanceID = rule Name:
    # {rules: [{name, enabled, direction, action, protocol, local_ports, profile}], active_profile, profiles: {name: enabled}}; Python matches ports.
    # Docs: https://learn.microsoft.com/powershell/module/netsecurity/get-netfirewallportfilter
    # Docs: https://learn.microsoft.com/powershell/module/netsecurity/get-netfirewallrule
    # Docs: https://learn.microsoft.com/powershell/module/netsecurity/get-netfirewallsetting
    # Docs: https://learn.microsoft.com/powershell/module/netsecurity/get-netfirewallprofile
    [CmdletBinding()]
    param()
    $byName = @{}
    foreach ($rule in (Get-NetFirewallRule -PolicyStore ActiveStore -Direction Inbound)) { $byName[[string]$rule.Name] = $rule }
    $rules = New-Object -TypeName 'System.Collections.Generic.List[object]'
    foreach ($filter in (Get-NetFirewallPortFilter -All -PolicyStore ActiveStore)) {
        $rule = $byName[[string]$filter.InstanceID]
        if ($null -eq $rule -or @('TCP', '6', 'Any') -notcontains [string]$filter.Protocol) { continue }
        [void]$rules.Add([ordered]@{ name = [string]$rule.DisplayName; enabled = ([string]$rule.Enabled -eq 'True'); direction = [string]$rule.Direction
            action = [string]$rule.Action; protocol = [string]$filter.Protocol; local_ports = [string[]]@($filter.LocalPort); profile = [string]$rule.Profile })
    }
    $profiles = [ordered]@{}
    foreach ($item in (Get-NetFirewallProfile -All -PolicyStore ActiveStore)) { $profiles[[string]$item.Name] = ([string]$item.Enabled -eq 'True') }
    return [ordered]@{ rules = $rules.ToArray(); active_profile = [string](Get-NetFirewallSetting -PolicyStore ActiveStore).ActiveProfile; profiles = $profiles }
}

function Get-DoctorWasEvent {
    # WAS events 5002/5009/5010/5011/5013 of the System log: [{id, time, provider, pool, message}]; id 0: a read problem.
    # Docs: https://learn.microsoft.com/powershell/module/microsoft.powershell.diagnostics/get-winevent
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [long] $Minutes, [Parameter(Mandatory = $true)] [long] $MaxEvents)
    $events = New-Object -TypeName 'System.Collections.Generic.List[object]'
    $filterTable = @{ LogName = 'System'; ProviderName = 'Microsoft-Windows-WAS'; Id = @(5002, 5009, 5010, 5011, 5013); StartTime = (Get-Date).AddMinutes(-$Minutes) }
    # A record that cannot be read is a non-terminating error: the others are kept; no matching event (NoMatchingEventsFound) is no error.
    $found = @(); try { $found = @(Get-WinEvent -FilterHashtable $filterTable -MaxEvents $MaxEvents -ErrorAction SilentlyContinue -ErrorVariable problems) } catch { $problems = @($_) }
    foreach ($problem in @($problems | Where-Object { $_.FullyQualifiedErrorId -notlike 'NoMatchingEventsFound*' })) {
        [void]$events.Add([ordered]@{ id = 0; time = $null; provider = 'Get-WinEvent'; pool = ''; message = [string]$problem.Exception.Message })
    }
    foreach ($event in $found) {  # the pool is insertion string %1 of these WAS events; the message is localized
        [void]$events.Add([ordered]@{ id = $event.Id; time = $event.TimeCreated.ToUniversalTime().ToString('o', [System.Globalization.CultureInfo]::InvariantCulture); provider = $event.ProviderName
            pool = $(if ($event.Properties.Count) { [string]$event.Properties[0].Value } else { '' }); message = [string]$event.Message })
    }
    return , $events.ToArray()
}

function Get-DoctorState {
    # -Json {"acl_paths", "web_config", "log_folder", "log_bytes", "disk_path", "ports", "groups",
    # "process_filter", "event_minutes", "event_max", "request": null | {url, host, certificate_hash}}
    # -> {now, acls, web_config: {exists, text}, schema: {file: [section names]}, groups: {sid: [member sids]},
    # firewall: {rules, active_profile, profiles}, disk, processes, log, events, request}; a part that throws is {error} (docs/remote-functions.md).
    # Docs: https://learn.microsoft.com/powershell/module/microsoft.powershell.localaccounts/get-localgroupmember
    # Docs: https://learn.microsoft.com/dotnet/api/system.io.driveinfo?view=netframework-4.8
    # Docs: https://learn.microsoft.com/windows/win32/cimwin32prov/win32-process https://learn.microsoft.com/powershell/module/cimcmdlets/get-ciminstance
    # Docs: https://learn.microsoft.com/powershell/module/microsoft.powershell.utility/select-xml
    # Docs: https://learn.microsoft.com/dotnet/api/system.io.directoryinfo.getfiles?view=netframework-4.8 https://learn.microsoft.com/dotnet/api/system.io.filesysteminfo.refresh?view=netframework-4.8
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [AllowEmptyString()] [string] $Json)
    $function = 'Get-DoctorState'
    $call = ConvertFrom-CallJson -Json $Json -Function $function
    $aclPaths = Get-CallValue -Call $call -Name 'acl_paths' -Type strings -Function $function
    $webConfigPath = Get-CallValue -Call $call -Name 'web_config' -Type string -Default '' -Function $function
    $logFolder = Get-CallValue -Call $call -Name 'log_folder' -Type string -Default '' -Function $function
    $logBytes = Get-CallValue -Call $call -Name 'log_bytes' -Type integer -Default 4096 -Minimum 1 -Maximum 16384 -Function $function
    $diskPath = Get-CallValue -Call $call -Name 'disk_path' -Type string -Default 'C:\' -Function $function
    $ports = Get-CallValue -Call $call -Name 'ports' -Type array -Function $function
    $groupSids = Get-CallValue -Call $call -Name 'groups' -Type strings -Function $function
    $needle = Get-CallValue -Call $call -Name 'process_filter' -Type string -Default '' -Function $function
    $minutes = Get-CallValue -Call $call -Name 'event_minutes' -Type integer -Default 60 -Minimum 1 -Maximum 10080 -Function $function
    $maxEvents = Get-CallValue -Call $call -Name 'event_max' -Type integer -Default 50 -Minimum 1 -Maximum 500 -Function $function
    $request = Get-CallValue -Call $call -Name 'request' -Type object -Function $function
    # Every part is one Invoke-DoctorProbe ({error} for that part alone); %SystemDrive%-style paths are expanded as IIS does.
    # Docs: https://learn.microsoft.com/dotnet/api/system.environment.expandenvironmentvariables?view=netframework-4.8
    # Times in round-trip "o" format, InvariantCulture (a custom format would take the culture's separators and calendar).
    # Docs: https://learn.microsoft.com/dotnet/standard/base-types/standard-date-and-time-format-strings
    $invariant = [System.Globalization.CultureInfo]::InvariantCulture
    $webConfigPath = [Environment]::ExpandEnvironmentVariables($webConfigPath); $logFolder = [Environment]::ExpandEnvironmentVariables($logFolder)
    $webConfig = Invoke-DoctorProbe { if ($webConfigPath -and [System.IO.File]::Exists($webConfigPath)) {
            [ordered]@{ exists = $true; size = (New-Object -TypeName 'System.IO.FileInfo' -ArgumentList $webConfigPath).Length; text = (Get-DoctorTail -Path $webConfigPath -Count 65536 -Head) }
        } else { [ordered]@{ exists = $false; text = $null } } }
    $schema = [ordered]@{}
    foreach ($file in (Get-ChildItem -LiteralPath (Join-Path -Path (Get-InetsrvPath) -ChildPath 'config\schema') -Filter '*.xml' -File -ErrorAction SilentlyContinue)) {
        $schema[$file.Name] = Invoke-DoctorProbe { , [string[]]@(Select-Xml -LiteralPath $file.FullName -XPath '/configSchema/sectionSchema/@name' | ForEach-Object { $_.Node.Value }) }
    }
    $groups = [ordered]@{}
    foreach ($sid in $groupSids) {
        try { $groups[$sid] = [string[]]@(Get-LocalGroupMember -SID $sid | ForEach-Object { $_.SID.Value }) } catch { $groups[$sid] = $null }
    }
    $firewall = Invoke-DoctorProbe { if (@($ports).Count) { Get-DoctorFirewallRule } else { [ordered]@{ rules = @(); active_profile = ''; profiles = @{} } } }
    $disk = Invoke-DoctorProbe { $drive = New-Object -TypeName 'System.IO.DriveInfo' -ArgumentList ([System.IO.Path]::GetPathRoot([Environment]::ExpandEnvironmentVariables($diskPath)))
        [ordered]@{ drive = $drive.Name.TrimEnd('\'); free_bytes = $drive.AvailableFreeSpace; total_bytes = $drive.TotalSize } }
    $processes = Invoke-DoctorProbe { $found = New-Object -TypeName 'System.Collections.Generic.List[object]'
        foreach ($process in (Get-CimInstance -ClassName Win32_Process -Filter "Name = 'python.exe' OR Name = 'pythonw.exe'")) {
            $line = [string]$process.CommandLine
            if ($needle -and $line.IndexOf($needle, [System.StringComparison]::OrdinalIgnoreCase) -lt 0) { continue }
            [void]$found.Add([ordered]@{ pid = [int]$process.ProcessId; parent_pid = [int]$process.ParentProcessId; name = [string]$process.Name
                command_line = $line.Substring(0, [math]::Min(2048, $line.Length)); started = $process.CreationDate.ToUniversalTime().ToString('o', $invariant) })
        }
        , $found.ToArray() }
    $log = Invoke-DoctorProbe { if ($logFolder -and [System.IO.Directory]::Exists($logFolder)) {  # Refresh: the directory entry is stale while written
            $newest = (New-Object -TypeName 'System.IO.DirectoryInfo' -ArgumentList $logFolder).GetFiles('stdout*') | ForEach-Object { $_.Refresh(); $_ } | Sort-Object -Property LastWriteTimeUtc -Descending | Select-Object -First 1
            if ($null -ne $newest) { [ordered]@{ name = $newest.Name; size = $newest.Length; modified = $newest.LastWriteTimeUtc.ToString('o', $invariant); tail = (Get-DoctorTail -Path $newest.FullName -Count ([int]$logBytes)) } }
        } }
    $events = Invoke-DoctorProbe { Get-DoctorWasEvent -Minutes $minutes -MaxEvents $maxEvents }
    $answer = $null
    if ($null -ne $request) {
        $url = Get-CallValue -Call $request -Name 'url' -Type string -Required -Function $function
        $hostName = Get-CallValue -Call $request -Name 'host' -Type string -Default '' -Function $function
        $hash = Get-CallValue -Call $request -Name 'certificate_hash' -Type string -Default '' -Function $function
        $answer = Invoke-HealthRequest -Url $url -HostName $hostName -CertificateHash $hash -TimeoutSeconds 10
        $answer['url'] = $url; $answer['host'] = $hostName
    }
    $now = [DateTime]::UtcNow.ToString('o', $invariant)
    $acls = [ordered]@{}
    foreach ($path in $aclPaths) {
        $acls[$path] = Invoke-DoctorProbe { $expanded = [Environment]::ExpandEnvironmentVariables($path); Assert-AbsolutePath -Path $expanded -Function $function; Get-PathAclReport -Path $expanded -Function $function }
    }
    Write-CallResult -InputObject ([ordered]@{
        now = $now; acls = $acls; web_config = $webConfig; schema = $schema; groups = $groups; firewall = $firewall
        disk = $disk; processes = $processes; log = $log; events = $events; request = $answer
    })
}
