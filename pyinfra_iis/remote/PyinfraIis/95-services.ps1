# PyinfraIis module, part 95: the ARR mode's app services (WinSW wrapping uvicorn), one slot each
# (docs/remote-functions.md, "Services"). The controller renders the service XML, picks the slot,
# decides what a state means and when to switch; the host installs, starts, stops and reports.
# Docs: https://github.com/winsw/winsw/blob/v2.12.0/doc/installation.md (<id>.exe install, <id>.xml beside it)

function Get-AppServiceStatus {
    # The service's status name (Running, Stopped, StartPending...) or $null when it is not installed.
    # Docs: https://learn.microsoft.com/powershell/module/microsoft.powershell.management/get-service?view=powershell-5.1
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [string] $Name)
    $service = Get-Service -Name $Name -ErrorAction SilentlyContinue
    if ($null -eq $service) { return $null }
    return $service.Status.ToString()
}

function Install-AppService {
    # Remote primitive: the pinned wrapper copied to <id>.exe (downloaded for https://), its
    # SHA-256 checked before it runs, then "<id>.exe install" unless the service exists. The XML
    # (<id>.xml beside it) was written before by Write-TextFile.
    # {"name", "wrapper": <dir>\<id>.exe, "source": host path, UNC or https URL, "sha256"} -> {"name", "installed", "state"}
    # Docs: https://learn.microsoft.com/powershell/module/microsoft.powershell.utility/invoke-webrequest?view=powershell-5.1
    # Docs: https://learn.microsoft.com/powershell/module/microsoft.powershell.management/copy-item?view=powershell-5.1
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [AllowEmptyString()] [string] $Json)
    $function = 'Install-AppService'
    $call = ConvertFrom-CallJson -Json $Json -Function $function
    $name = Get-CallValue -Call $call -Name 'name' -Type string -Required -Function $function
    $wrapper = Get-CallValue -Call $call -Name 'wrapper' -Type string -Required -Function $function
    $source = Get-CallValue -Call $call -Name 'source' -Type string -Required -Function $function
    $sha256 = Get-CallValue -Call $call -Name 'sha256' -Type string -Required -Function $function
    if ($wrapper -notmatch '^[A-Za-z]:\\' -or -not $wrapper.EndsWith('\' + $name + '.exe', [System.StringComparison]::OrdinalIgnoreCase)) {
        throw ('{0}: "wrapper" must be an absolute path ending in \{1}.exe (WinSW reads <id>.xml beside <id>.exe)' -f $function, $name)
    }
    $current = $null
    if ([System.IO.File]::Exists($wrapper)) { $current = Get-Sha256Hex -InputObject ([System.IO.File]::ReadAllBytes($wrapper)) }
    if ($current -cne $sha256.ToLowerInvariant()) {
        if ((Get-AppServiceStatus -Name $name) -eq 'Running') { throw ('{0}: {1} runs another wrapper; stop it before its wrapper is replaced' -f $function, $name) }
        if ($source -match '^https://') {
            Enable-ModernTls
            $shown = New-Object -TypeName 'System.Uri' -ArgumentList $source  # no query (SAS tokens) in errors
            try { Invoke-WebRequest -Uri $source -OutFile $wrapper -UseBasicParsing } catch { throw ('{0}: cannot download {1}://{2}{3}: {4}' -f $function, $shown.Scheme, $shown.Host, $shown.AbsolutePath, $_.Exception.Message) }
        } elseif ($source -match '^[A-Za-z]:\\|^\\\\') {
            Copy-Item -LiteralPath $source -Destination $wrapper -Force
        } else { throw ('{0}: "source" must be a host path, a UNC path or an https:// URL' -f $function) }
        Assert-FileSha256 -Path $wrapper -Expected $sha256 -RemoveMismatch -Function $function
    }
    $installed = $false
    if ($null -eq (Get-AppServiceStatus -Name $name)) {
        $run = Invoke-HostProgram -FilePath $wrapper -Arguments @('install') -WorkingDirectory ([System.IO.Path]::GetDirectoryName($wrapper)) -TimeoutSeconds 120 -Step ('install ' + $name) -Function $function
        if ($run['exit_code'] -ne 0) { throw ('{0}: {1} install exited with {2}: {3}{4}' -f $function, $name, $run['exit_code'], $run['stdout'], $run['stderr']) }
        $installed = $true
    }
    Write-CallResult -InputObject ([ordered]@{ name = $name; installed = $installed; state = (Get-AppServiceStatus -Name $name) })
}

function Start-AppService {
    # Remote primitive: start the service (startup type Automatic; at most 120 s until Running), then request its
    # health URL on 127.0.0.1:<slot port> until healthy, the deadline or the service Stopped (its process
    # exited: WinSW exits with it; Wait-ReleaseHealthy, part 92);
    # unhealthy: the last 30 lines of "log" (the service's stderr log) in log_tail.
    # {"name", "health": {url, host, expect_version, expect_status, deadline_seconds}, "log"} -> {"name", "state", "health", "log_tail"}
    # Docs: https://learn.microsoft.com/dotnet/api/system.serviceprocess.servicecontroller.waitforstatus?view=netframework-4.8
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [AllowEmptyString()] [string] $Json)
    $function = 'Start-AppService'
    $call = ConvertFrom-CallJson -Json $Json -Function $function
    $name = Get-CallValue -Call $call -Name 'name' -Type string -Required -Function $function
    $health = Get-CallValue -Call $call -Name 'health' -Type object -Required -Function $function
    $log = Get-CallValue -Call $call -Name 'log' -Type string -Default '' -Function $function
    if ($null -eq (Get-AppServiceStatus -Name $name)) { throw ('{0}: service {1} is not installed' -f $function, $name) }
    $answer = [ordered]@{ ok = $false; status = $null; body = ''; error = $null; seconds = 0 }
    # Start-Service would wait without limit while StartPending (its DoWaitForStatus loop); WaitForStatus throws after 120 s.
    try { Set-Service -Name $name -StartupType Automatic; $service = Get-Service -Name $name; if ($service.Status -eq 'Stopped') { $service.Start() }; $service.WaitForStatus('Running', [TimeSpan]::FromSeconds(120)) } catch { $answer['error'] = ('start failed: {0}' -f $_.Exception.GetBaseException().Message) }
    if ($null -eq $answer['error']) { $answer = Wait-ReleaseHealthy -Health $health -Function $function -ServiceName $name }
    $tail = $null
    if (-not $answer['ok'] -and $log.Length -gt 0) { $tail = Get-TextFileTail -Path $log -Count 30 }
    Write-CallResult -InputObject ([ordered]@{ name = $name; state = (Get-AppServiceStatus -Name $name); health = $answer; log_tail = $tail })
}

function Stop-AppService {
    # Remote primitive: stop the service (WinSW sends Ctrl+C, waits its stoptimeout, then kills;
    # we wait for Stopped), startup type Disabled. Not installed: nothing to do.
    # {"name"} -> {"name", "state"}
    # Docs: https://learn.microsoft.com/dotnet/api/system.serviceprocess.servicecontroller.stop?view=netframework-4.8
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [AllowEmptyString()] [string] $Json)
    $function = 'Stop-AppService'
    $call = ConvertFrom-CallJson -Json $Json -Function $function
    $name = Get-CallValue -Call $call -Name 'name' -Type string -Required -Function $function
    $service = Get-Service -Name $name -ErrorAction SilentlyContinue
    # Disabled: neither a reboot (<startmode> Automatic) nor the SCM restarting a crashed slot (<onfailure>) runs an idle slot.
    if ($null -ne $service) { Set-Service -Name $name -StartupType Disabled }
    if ($null -ne $service -and $service.Status -ne 'Stopped') {
        # Bounded waits (Stop-Service has none): StartPending cannot take a stop; WinSW kills after <stoptimeout> (at most 3600 s).
        try { if ($service.Status -eq 'StartPending') { $service.WaitForStatus('Running', [TimeSpan]::FromSeconds(120)) }
            if ($service.Status -ne 'StopPending') { $service.Stop() }; $service.WaitForStatus('Stopped', [TimeSpan]::FromSeconds(3720))
        } catch { throw ('{0}: cannot stop {1}: {2}' -f $function, $name, $_.Exception.GetBaseException().Message) }
    }
    Write-CallResult -InputObject ([ordered]@{ name = $name; state = (Get-AppServiceStatus -Name $name) })
}

function Get-AppServiceState {
    # Remote primitive: {"names": [service ids]} -> {"services": {id: status name or null}}.
    # Docs: https://learn.microsoft.com/dotnet/api/system.serviceprocess.servicecontrollerstatus?view=netframework-4.8
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [AllowEmptyString()] [string] $Json)
    $function = 'Get-AppServiceState'
    $call = ConvertFrom-CallJson -Json $Json -Function $function
    $names = Get-CallValue -Call $call -Name 'names' -Type strings -Required -Function $function
    $services = [ordered]@{}
    foreach ($name in $names) { $services[$name] = Get-AppServiceStatus -Name $name }
    Write-CallResult -InputObject ([ordered]@{ services = $services })
}
