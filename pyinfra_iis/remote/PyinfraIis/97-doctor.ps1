# PyinfraIis module, part 97: Get-DoctorState, RAW read-only data for deploys/doctor.py; pyinfra_iis/doctor decides.

function Get-DoctorTail {
    # The last (-Head: first) Count bytes of a file another process may hold open (HttpPlatformHandler's log).
    # Docs: https://learn.microsoft.com/dotnet/api/system.io.fileshare?view=netframework-4.8
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [string] $Path, [Parameter(Mandatory = $true)] [int] $Count, [switch] $Head)
    $stream = New-Object -TypeName 'System.IO.FileStream' -ArgumentList $Path, ([System.IO.FileMode]::Open), ([System.IO.FileAccess]::Read), ([System.IO.FileShare]::ReadWrite)
    try {
        if (-not $Head) { [void]$stream.Seek([math]::Max(0, $stream.Length - $Count), [System.IO.SeekOrigin]::Begin) }
        return [System.Text.Encoding]::UTF8.GetString((Read-StreamBytes -Stream $stream -Count $Count))
    } finally { $stream.Dispose() }
}

function Get-DoctorFirewallRule {
    # Rules (enabled or not) whose TCP port filter names one of Ports or Any: {name, enabled, direction, action, protocol, local_ports, profile}.
    # Docs: https://learn.microsoft.com/powershell/module/netsecurity/get-netfirewallportfilter
    # Docs: https://learn.microsoft.com/powershell/module/netsecurity/get-netfirewallrule
    [CmdletBinding()]
    param([AllowEmptyCollection()] [object[]] $Ports = @())
    $wanted = @($Ports | ForEach-Object { [string]$_ }) + @('Any')
    $rules = New-Object -TypeName 'System.Collections.Generic.List[object]'
    foreach ($filter in (Get-NetFirewallPortFilter -Protocol TCP)) {
        $local = [string[]]@($filter.LocalPort)
        if (-not ($local | Where-Object { $wanted -contains $_ })) { continue }
        foreach ($rule in ($filter | Get-NetFirewallRule)) {
            [void]$rules.Add([ordered]@{ name = [string]$rule.DisplayName; enabled = ([string]$rule.Enabled -eq 'True'); direction = [string]$rule.Direction
                action = [string]$rule.Action; protocol = 'TCP'; local_ports = $local; profile = [string]$rule.Profile })
        }
    }
    return , $rules.ToArray()
}

function Get-DoctorState {
    # -Json {"acl_paths", "web_config", "log_folder", "log_bytes", "disk_path", "ports", "groups",
    # "process_filter", "event_minutes", "event_max", "request": null | {url, host, certificate_hash}}
    # -> {now, acls, web_config: {exists, text}, schema: {file: [section names]}, groups: {sid: [member sids]},
    # firewall: [rules], disk, processes, log, events, request} (docs/remote-functions.md, "Doctor").
    # Docs: https://learn.microsoft.com/powershell/module/microsoft.powershell.localaccounts/get-localgroupmember
    # Docs: https://learn.microsoft.com/dotnet/api/system.io.driveinfo?view=netframework-4.8
    # Docs: https://learn.microsoft.com/windows/win32/cimwin32prov/win32-process https://learn.microsoft.com/powershell/module/cimcmdlets/get-ciminstance
    # Docs: https://learn.microsoft.com/powershell/module/microsoft.powershell.diagnostics/get-winevent
    # Docs: https://learn.microsoft.com/powershell/module/microsoft.powershell.utility/select-xml
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
    $webConfig = [ordered]@{ exists = $false; text = $null }
    if ($webConfigPath -and [System.IO.File]::Exists($webConfigPath)) { $webConfig = [ordered]@{ exists = $true; text = (Get-DoctorTail -Path $webConfigPath -Count 65536 -Head) } }
    $schema = [ordered]@{}
    foreach ($file in (Get-ChildItem -LiteralPath (Join-Path -Path (Get-InetsrvPath) -ChildPath 'config\schema') -Filter '*.xml' -File -ErrorAction SilentlyContinue)) {
        $schema[$file.Name] = [string[]]@(Select-Xml -LiteralPath $file.FullName -XPath '/configSchema/sectionSchema/@name' | ForEach-Object { $_.Node.Value })
    }
    $groups = [ordered]@{}
    foreach ($sid in $groupSids) {
        try { $groups[$sid] = [string[]]@(Get-LocalGroupMember -SID $sid | ForEach-Object { $_.SID.Value }) } catch { $groups[$sid] = $null }
    }
    $firewall = Get-DoctorFirewallRule -Ports $ports
    $drive = New-Object -TypeName 'System.IO.DriveInfo' -ArgumentList ([System.IO.Path]::GetPathRoot($diskPath))
    $disk = [ordered]@{ drive = $drive.Name.TrimEnd('\'); free_bytes = $drive.AvailableFreeSpace; total_bytes = $drive.TotalSize }
    $processes = New-Object -TypeName 'System.Collections.Generic.List[object]'
    foreach ($process in (Get-CimInstance -ClassName Win32_Process -Filter "Name = 'python.exe' OR Name = 'pythonw.exe'")) {
        $line = [string]$process.CommandLine
        if ($needle -and $line.IndexOf($needle, [System.StringComparison]::OrdinalIgnoreCase) -lt 0) { continue }
        [void]$processes.Add([ordered]@{ pid = [int]$process.ProcessId; parent_pid = [int]$process.ParentProcessId; name = [string]$process.Name
            command_line = $line.Substring(0, [math]::Min(2048, $line.Length)); started = $process.CreationDate.ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss'Z'") })
    }
    $log = $null
    if ($logFolder -and [System.IO.Directory]::Exists($logFolder)) {
        $newest = (New-Object -TypeName 'System.IO.DirectoryInfo' -ArgumentList $logFolder).GetFiles('stdout*') | Sort-Object -Property LastWriteTimeUtc -Descending | Select-Object -First 1
        if ($null -ne $newest) {
            $log = [ordered]@{ name = $newest.Name; size = $newest.Length; modified = $newest.LastWriteTimeUtc.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'"); tail = (Get-DoctorTail -Path $newest.FullName -Count ([int]$logBytes)) }
        }
    }
    $events = New-Object -TypeName 'System.Collections.Generic.List[object]'
    $filterTable = @{ LogName = 'System'; ProviderName = 'Microsoft-Windows-WAS'; Id = @(5002, 5009, 5010, 5011, 5013); StartTime = (Get-Date).AddMinutes(-$minutes) }
    # No matching event is an error (NoMatchingEventsFound); any other is reported as an event with id 0.
    $found = @()
    try { $found = @(Get-WinEvent -FilterHashtable $filterTable -MaxEvents $maxEvents -ErrorAction Stop) } catch {
        if ($_.FullyQualifiedErrorId -notlike 'NoMatchingEventsFound*') { [void]$events.Add([ordered]@{ id = 0; time = $null; provider = 'Get-WinEvent'; message = $_.Exception.Message }) }
    }
    foreach ($event in $found) {
        [void]$events.Add([ordered]@{ id = $event.Id; time = $event.TimeCreated.ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss'Z'"); provider = $event.ProviderName; message = [string]$event.Message })
    }
    $answer = $null
    if ($null -ne $request) {
        $url = Get-CallValue -Call $request -Name 'url' -Type string -Required -Function $function
        $hostName = Get-CallValue -Call $request -Name 'host' -Type string -Default '' -Function $function
        $hash = Get-CallValue -Call $request -Name 'certificate_hash' -Type string -Default '' -Function $function
        $answer = Invoke-HealthRequest -Url $url -HostName $hostName -CertificateHash $hash -TimeoutSeconds 10
        $answer['url'] = $url; $answer['host'] = $hostName
    }
    $now = [DateTime]::UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'")
    $acls = Get-PathAclState -Paths $aclPaths -Function $function
    Write-CallResult -InputObject ([ordered]@{
        now = $now; acls = $acls; web_config = $webConfig; schema = $schema; groups = $groups; firewall = $firewall
        disk = $disk; processes = $processes.ToArray(); log = $log; events = $events.ToArray(); request = $answer
    })
}
