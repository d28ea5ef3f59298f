# PyinfraIis module, part 92: the health check of a release (Switch-Release, part 93): GET the
# health URL through the site's IIS binding until it answers the expected status or the deadline
# passes, and the evidence an unhealthy release fails with.
#
# Contract: docs/remote-functions.md, "Releases" (Switch-Release).
# HttpWebRequest.Host "can be used to set the Host header value to use in an HTTP request
# independent from the request URI" [V]:
# https://learn.microsoft.com/dotnet/api/system.net.httpwebrequest.host?view=netframework-4.8.1
# Inference [I], not checked on Windows: in .NET Framework 4.x the TLS client of HttpWebRequest is
# created with the host of GetRemoteResourceUri(), which is the Host property when one is set
# (System.dll Connection: `new TlsStream(request.GetRemoteResourceUri().IdnHost, ...)`), so Host
# also drives SNI and the certificate name check. A health URL on 127.0.0.1 with host
# "api.example.com" therefore reaches the SNI binding of api.example.com and checks its
# certificate against that name.

# Time limit of one request (seconds), pause between requests (milliseconds), body bytes kept
# (2 KB, contract).
$script:HealthRequestTimeoutSeconds = 10
$script:HealthRetryDelayMilliseconds = 1000
$script:HealthBodyBytes = 2048

function Get-ReleaseHealthSettings {
    <#
    .SYNOPSIS
    Read the "health" object of Switch-Release.
    .OUTPUTS
    Ordered dictionary {url (absolute http/https), host (non-empty), deadline_seconds (1..3600),
    expect_status (100..599, default 200)}. Throws naming the bad member.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [psobject] $Call,
        [string] $Function = 'remote call'
    )
    $health = Get-CallValue -Call $Call -Name 'health' -Type object -Required -Function $Function
    $url = Get-CallValue -Call $health -Name 'url' -Type string -Required -Function $Function
    $hostName = Get-CallValue -Call $health -Name 'host' -Type string -Required -Function $Function
    $deadline = Get-CallValue -Call $health -Name 'deadline_seconds' -Type integer -Required -Minimum 1 -Maximum 3600 -Function $Function
    $expect = Get-CallValue -Call $health -Name 'expect_status' -Type integer -Default 200 -Minimum 100 -Maximum 599 -Function $Function
    $uri = $null
    if (-not [System.Uri]::TryCreate($url, [System.UriKind]::Absolute, [ref]$uri) -or ($uri.Scheme -ne 'http' -and $uri.Scheme -ne 'https')) {
        throw ('{0}: "health.url" must be an absolute http:// or https:// URL, got "{1}"' -f $Function, $url)
    }
    return [ordered]@{ url = $url; host = $hostName; deadline_seconds = [int]$deadline; expect_status = [int]$expect }
}

function Read-ResponseHead {
    <#
    .SYNOPSIS
    Read at most MaxBytes of a response body and decode them as UTF-8.
    .OUTPUTS
    [string]
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [System.Net.WebResponse] $Response,
        [int] $MaxBytes = 2048
    )
    $stream = $Response.GetResponseStream()
    try {
        return [System.Text.Encoding]::UTF8.GetString((Read-StreamBytes -Stream $stream -Count $MaxBytes))
    } finally {
        $stream.Dispose()
    }
}

function Invoke-HealthRequest {
    <#
    .SYNOPSIS
    One GET of the health URL through the IIS binding: connect to the URL's address, send Host =
    HostName (which also drives SNI and the certificate name check, see the file header [I]), no
    redirects, a new connection each time (KeepAlive off, so a recycled app is really reached).
    .PARAMETER Url
    http:// or https:// URL (e.g. https://127.0.0.1:443/healthz).
    .PARAMETER HostName
    The site's host name (binding host header).
    .PARAMETER TimeoutSeconds
    Time limit of the request (connect and read), seconds.
    .OUTPUTS
    Ordered dictionary {status: int or $null, body: first 2 KB or '', error: message or $null}.
    Never throws for network or HTTP errors (they are the answer).
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Url,
        [Parameter(Mandatory = $true)]
        [string] $HostName,
        [Parameter(Mandatory = $true)]
        [int] $TimeoutSeconds
    )
    $answer = [ordered]@{ status = $null; body = ''; error = $null }
    $response = $null
    try {
        $request = [System.Net.WebRequest]::Create($Url)
        $request.Host = $HostName
        $request.Method = 'GET'
        $request.Timeout = $TimeoutSeconds * 1000
        $request.ReadWriteTimeout = $TimeoutSeconds * 1000
        $request.AllowAutoRedirect = $false
        $request.KeepAlive = $false
        $request.UserAgent = 'pyinfra-iis health check'
        $response = $request.GetResponse()
    } catch {
        $exception = $_.Exception
        while ($exception -isnot [System.Net.WebException] -and $null -ne $exception.InnerException) {
            $exception = $exception.InnerException
        }
        if ($exception -is [System.Net.WebException] -and $null -ne $exception.Response) {
            # 4xx / 5xx: HttpWebRequest throws, but the answer is in the exception.
            $response = $exception.Response
        } else {
            $answer['error'] = [string]$exception.Message
            if ($null -ne $exception.InnerException) {
                $answer['error'] = '{0} ({1})' -f $exception.Message, $exception.InnerException.Message
            }
            return $answer
        }
    }
    try {
        $answer['status'] = [int]$response.StatusCode
        $answer['body'] = Read-ResponseHead -Response $response -MaxBytes $script:HealthBodyBytes
    } catch {
        $answer['error'] = 'reading the answer failed: ' + $_.Exception.Message
    } finally {
        $response.Close()
    }
    return $answer
}

function Wait-ReleaseHealthy {
    <#
    .SYNOPSIS
    Request the health URL until it answers the expected status or the deadline passes.
    .PARAMETER Health
    From Get-ReleaseHealthSettings.
    .PARAMETER Clock
    A running System.Diagnostics.Stopwatch, started when the switch began (the deadline counts from
    there).
    .OUTPUTS
    Ordered dictionary {ok: bool, status, body, error, seconds (since the clock started, 0.1 s)}:
    the last answer. Each request gets at most $script:HealthRequestTimeoutSeconds (10 s) and the
    time left; requests are 1 s apart; the loop always ends by the deadline plus one request.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [System.Collections.IDictionary] $Health,
        [Parameter(Mandatory = $true)]
        [System.Diagnostics.Stopwatch] $Clock
    )
    Enable-ModernTls
    $deadline = [double]$Health['deadline_seconds']
    while ($true) {
        $left = $deadline - $Clock.Elapsed.TotalSeconds
        $timeout = [int][math]::Max(1, [math]::Min($script:HealthRequestTimeoutSeconds, [math]::Ceiling($left)))
        $answer = Invoke-HealthRequest -Url $Health['url'] -HostName $Health['host'] -TimeoutSeconds $timeout
        $ok = $null -ne $answer['status'] -and $answer['status'] -eq $Health['expect_status']
        if ($ok -or $Clock.Elapsed.TotalSeconds + ($script:HealthRetryDelayMilliseconds / 1000) -ge $deadline) {
            return [ordered]@{
                ok = $ok
                status = $answer['status']
                body = $answer['body']
                error = $answer['error']
                seconds = [math]::Round($Clock.Elapsed.TotalSeconds, 1)
            }
        }
        Start-Sleep -Milliseconds $script:HealthRetryDelayMilliseconds
    }
}

function Format-HealthAnswer {
    <#
    .SYNOPSIS
    Describe the last health answer for an error message: status (or the network error) and the
    first 2 KB of the body.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [System.Collections.IDictionary] $Answer,
        [Parameter(Mandatory = $true)]
        [System.Collections.IDictionary] $Health
    )
    if ($null -eq $Answer['status']) {
        $what = 'no HTTP answer ({0})' -f $Answer['error']
    } else {
        $what = 'status {0}' -f $Answer['status']
    }
    return ('GET {0} (Host: {1}) gave {2} after {3} s, expected {4}; body (first 2 KB):{5}{6}' -f $Health['url'], $Health['host'], $what, $Answer['seconds'], $Health['expect_status'], "`n", $Answer['body'])
}

function Get-NewestLogTail {
    <#
    .SYNOPSIS
    Return the name and last lines of the newest file in <root>\logs (HttpPlatformHandler's
    stdout logs, stdout_<timestamp>_<pid>.log).
    .OUTPUTS
    [string] "<path>:\n<lines>", or a note when there is no log.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Folder,
        [int] $Count = 30
    )
    if (-not [System.IO.Directory]::Exists($Folder)) {
        return ('(no log folder {0})' -f $Folder)
    }
    $newest = $null
    foreach ($file in (New-Object -TypeName 'System.IO.DirectoryInfo' -ArgumentList $Folder).GetFiles()) {
        if ($null -eq $newest -or $file.LastWriteTimeUtc -gt $newest.LastWriteTimeUtc) {
            $newest = $file
        }
    }
    if ($null -eq $newest) {
        return ('(no log in {0})' -f $Folder)
    }
    return ('{0}:{1}{2}' -f $newest.FullName, "`n", (Get-TextFileTail -Path $newest.FullName -Count $Count))
}
