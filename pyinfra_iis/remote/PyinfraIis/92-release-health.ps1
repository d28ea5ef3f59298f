# PyinfraIis module, part 92: one health request through an IIS binding (used by Switch-Release).

function Invoke-HealthRequest {
    # GET Url with Host (and SNI) = HostName; one answer {status (null when none), body (2 KB),
    # release (X-Release-Version header), error}. For https with CertificateHash the handshake is
    # accepted when the presented certificate's thumbprint is that hash: a per-request
    # ServerCertificateValidationCallback, never the process-wide ServicePointManager one, so a
    # binding without a host name (certificate not issued to "localhost") passes.
    # Docs: https://learn.microsoft.com/dotnet/api/system.net.httpwebrequest.servercertificatevalidationcallback?view=netframework-4.8
    # Docs: https://learn.microsoft.com/dotnet/api/system.net.httpwebrequest.host?view=netframework-4.8
    # Docs: https://learn.microsoft.com/dotnet/api/system.security.cryptography.x509certificates.x509certificate.getcerthashstring?view=netframework-4.8
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [string] $Url, [string] $HostName, [string] $CertificateHash, [int] $TimeoutSeconds = 10)
    Enable-ModernTls
    $answer = [ordered]@{ status = $null; body = ''; release = $null; error = $null }
    $request = [System.Net.HttpWebRequest][System.Net.WebRequest]::Create($Url)
    $request.Method = 'GET'
    $request.Timeout = $TimeoutSeconds * 1000
    $request.ReadWriteTimeout = $TimeoutSeconds * 1000
    $request.AllowAutoRedirect = $false
    $request.KeepAlive = $false
    $request.UserAgent = 'pyinfra-iis health check'
    if (-not [string]::IsNullOrEmpty($HostName)) { $request.Host = $HostName }
    if (-not [string]::IsNullOrEmpty($CertificateHash)) {
        $expected = $CertificateHash.ToUpperInvariant()
        $request.ServerCertificateValidationCallback = {
            param($sender, $certificate, $chain, $errors)
            return ($null -ne $certificate -and $certificate.GetCertHashString() -eq $expected)
        }.GetNewClosure()
    }
    $response = $null
    try {
        $response = $request.GetResponse()
    } catch [System.Net.WebException] {
        # 4xx / 5xx throw, but the answer is in the exception.
        $response = $_.Exception.Response
        if ($null -eq $response) { $answer['error'] = $_.Exception.Message }
    } catch {
        $answer['error'] = $_.Exception.Message
    }
    if ($null -ne $response) {
        try {
            $answer['status'] = [int]$response.StatusCode
            $answer['release'] = $response.Headers['X-Release-Version']
            $stream = $response.GetResponseStream()
            try { $answer['body'] = [System.Text.Encoding]::UTF8.GetString((Read-StreamBytes -Stream $stream -Count 2048)) } finally { $stream.Dispose() }
        } finally { $response.Close() }
    }
    return $answer
}

function Wait-ReleaseHealthy {
    # Request the health URL every 250 ms until ExpectStatus from release ExpectVersion (header
    # X-Release-Version, or the version as a JSON string in the body), the deadline, or an answer of
    # IIS itself with one of give_up_statuses (502.3: HttpPlatformHandler gave up; 503: pool stopped).
    # Returns {ok, status, body, error, seconds}. With ServiceName (ARR slots), a service that is
    # Stopped after Start-Service saw it Running ends the wait too: WinSW exits when its process does.
    # Docs: https://learn.microsoft.com/dotnet/api/system.diagnostics.stopwatch?view=netframework-4.8
    # Docs: https://learn.microsoft.com/windows/win32/services/service-status-transitions
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [psobject] $Health, [string] $Function = 'remote call', [string] $ServiceName = '')
    $url = Get-CallValue -Call $Health -Name 'url' -Type string -Required -Function $Function
    $hostName = Get-CallValue -Call $Health -Name 'host' -Type string -Default '' -Function $Function
    $hash = Get-CallValue -Call $Health -Name 'certificate_hash' -Type string -Default '' -Function $Function
    $version = Get-CallValue -Call $Health -Name 'expect_version' -Type string -Default '' -Function $Function
    $expect = Get-CallValue -Call $Health -Name 'expect_status' -Type integer -Default 200 -Minimum 100 -Maximum 599 -Function $Function
    $deadline = Get-CallValue -Call $Health -Name 'deadline_seconds' -Type integer -Default 120 -Minimum 1 -Maximum 7200 -Function $Function
    # IIS's own answers (no release header) with these statuses end the wait: the controller decides which.
    $giveUp = Get-CallValue -Call $Health -Name 'give_up_statuses' -Type array -Function $Function
    $clock = [System.Diagnostics.Stopwatch]::StartNew()
    while ($true) {
        $answer = Invoke-HealthRequest -Url $url -HostName $hostName -CertificateHash $hash -TimeoutSeconds 10
        $fromRelease = [string]::IsNullOrEmpty($version) -or $answer['release'] -ceq $version -or $answer['body'].Contains('"' + $version + '"')
        $answer['ok'] = ($answer['status'] -eq $expect) -and $fromRelease
        if ($answer['status'] -eq $expect -and -not $fromRelease) { $answer['error'] = 'the answer came from release {0}, not {1}' -f $answer['release'], $version }
        if ($null -eq $answer['release'] -and $null -ne $answer['status'] -and @($giveUp) -contains $answer['status']) {
            $answer['error'] = 'IIS answered {0} itself: the app cannot start or its pool stopped; not waiting for the deadline' -f $answer['status']
            break
        }
        if (-not $answer['ok'] -and $ServiceName.Length -gt 0 -and (Get-AppServiceStatus -Name $ServiceName) -eq 'Stopped') {
            $answer['error'] = 'service {0} stopped: its process exited; not waiting for the deadline' -f $ServiceName
            break
        }
        if ($answer['ok'] -or $clock.Elapsed.TotalSeconds + 0.25 -ge $deadline) { break }
        Start-Sleep -Milliseconds 250
    }
    $answer['seconds'] = [math]::Round($clock.Elapsed.TotalSeconds, 2)
    return $answer
}

function Assert-ReleaseStart {
    # The release's start check, run by Switch-Release BEFORE anything is committed, so a release whose
    # app does not start never takes traffic (docs/zero-downtime.md): the controller's script run by the
    # release's venv through the program runner. Check: {file, arguments, working_directory,
    # environment, timeout_seconds}; exit code 0 = the app imported, started and answered healthy;
    # otherwise throws with the last 30 lines it printed (its traceback and verdict).
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [psobject] $Check, [Parameter(Mandatory = $true)] [string] $Path, [string] $Function = 'remote call')
    $run = Invoke-CallProgram -Call $Check -DefaultTimeout 120 -Step 'the release start check' -Function $Function  # part 15
    if ($run['exit_code'] -eq 0) { return }
    $lines = @(([string]$run['stderr'] + "`n" + [string]$run['stdout']).Trim() -split "`r?`n" | Select-Object -Last 30)
    throw ('{0} {1}: start check failed with exit code {2}; nothing was switched. Last lines:{3}{4}' -f $Function, $Path, $run['exit_code'], "`n", ($lines -join "`n"))
}
