# PyinfraIis module, part 90: releases of the app (install, switch with a health check, clean up)
# and the "releases" part of Get-HostState.
#
# Contract: docs/remote-functions.md, "Releases"; design.md, "Releases". Host layout under a
# release root (models.release.ReleaseSettings.root):
#     <root>\artifacts\<app>-<version>.zip   <root>\releases\<version>\   <root>\releases\<version>.partial\
#     <root>\logs\                           <root>\release-state.json
# A folder exists under its final name only when it is COMPLETE: everything is built in
# <version>.partial, and the last step writes the completion marker and renames the folder.
#
# The completion marker: <release>\.pyinfra-iis-complete holds the UTC time the build completed
# ("o" round-trip format). Get-HostState and Remove-OldReleases order releases by it (the folder's
# last write time when it is missing). Complete = the marker, manifest.json and web.config exist.
#
# Artifact layout (pyinfra_iis/release/manifest.py): manifest.json ("files": path -> {sha256,
# size} for every file but itself, "version", "python" x.y, "app"), requirements.txt (the Windows
# pins without markers), app\, wheelhouse\*.whl. The venv is installed offline with
# `venv\Scripts\python.exe -m pip install --no-index --find-links wheelhouse -r requirements.txt`
# from the release's ROOT requirements.txt: that is the file the manifest module documents for
# this (the contract's "app\requirements.txt" would be the app's own lock, with markers).
#
# Microsoft docs relied on [V]:
# - ZipFile.OpenRead, ZipArchive.Entries / GetEntry, ZipFileExtensions.ExtractToFile
#   (System.IO.Compression.FileSystem, .NET Framework 4.5+):
#   https://learn.microsoft.com/dotnet/api/system.io.compression.zipfile.openread
#   ZipArchiveEntry.FullName "can contain invalid and absolute paths" - so every entry is checked
#   here to stay inside the release folder (zip slip):
#   https://learn.microsoft.com/dotnet/api/system.io.compression.ziparchiveentry.fullname
# - File.Replace (replace the state file in one step; backup name may be null):
#   https://learn.microsoft.com/dotnet/api/system.io.file.replace
# - Site.Applications, Application.VirtualDirectories, VirtualDirectory.PhysicalPath,
#   ServerManager.CommitChanges, ApplicationPool.Recycle / Start:
#   https://learn.microsoft.com/dotnet/api/microsoft.web.administration.application.virtualdirectories
#   https://learn.microsoft.com/dotnet/api/microsoft.web.administration.applicationpool
# - HttpWebRequest.Host "can be used to set the Host header value to use in an HTTP request
#   independent from the request URI":
#   https://learn.microsoft.com/dotnet/api/system.net.httpwebrequest.host?view=netframework-4.8.1
# Inferences [I], not checked on Windows:
# - In .NET Framework 4.x the TLS client of HttpWebRequest is created with the host of
#   GetRemoteResourceUri(), which is the Host property when one is set (System.dll Connection:
#   `new TlsStream(request.GetRemoteResourceUri().IdnHost, ...)`), so Host also drives SNI and the
#   certificate name check. A health URL on 127.0.0.1 with host "api.example.com" therefore reaches
#   the SNI binding of api.example.com and checks its certificate against that name.
# - Directory.Move of <version>.partial to <version> is one rename on the same volume: a reader
#   sees either no folder or the complete one.
# - A venv moved after creation keeps working for `python.exe -m ...` (pyvenv.cfg names the base
#   interpreter, not the venv's folder); only console-script launchers (venv\Scripts\*.exe) keep
#   the .partial path, which is why web.config runs `venv\Scripts\python.exe -m uvicorn`
#   (pyinfra_iis/release/webconfig.py).
# - Setting physicalPath restarts the application by itself (field notes, IIS); the pool is also
#   recycled so the new process starts now, not on the next request.
#
# One CommitChanges() per configuration change: Switch-Release commits the new physicalPath once,
# and, only when the health check fails, commits the restore as a second, separate change.

$script:ReleaseStateFileName = 'release-state.json'
$script:ReleaseCompleteMarker = '.pyinfra-iis-complete'
$script:PartialSuffix = '.partial'

# Entries kept in release-state.json "history" (oldest dropped first).
$script:ReleaseHistoryLimit = 100

# venv creation and pip install are each given this long (seconds) before they are killed [I].
$script:ReleaseProgramTimeoutSeconds = 1800

# Health check: time limit of one request (seconds), pause between requests (milliseconds), body
# bytes kept (2 KB, contract), stdout log lines in an error (30, contract).
$script:HealthRequestTimeoutSeconds = 10
$script:HealthRetryDelayMilliseconds = 1000
$script:HealthBodyBytes = 2048
$script:ReleaseLogTailLines = 30

# Renaming .partial can fail briefly while an anti-virus scanner holds a new file open [R]:
# so many tries, this many milliseconds apart.
$script:ReleaseMoveTries = 5
$script:ReleaseMoveDelayMilliseconds = 1000

# --- Arguments and layout ---------------------------------------------------------------------

function Get-ReleaseRootArgument {
    <#
    .SYNOPSIS
    Read "root": an absolute drive path (C:\sites\api) without '%' (IIS expands %VAR% in
    processPath and stdoutLogFile; models.release refuses it too), not a drive root.
    .OUTPUTS
    [string] without a trailing backslash. Throws when absent or invalid.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [System.Management.Automation.PSCustomObject] $Call,
        [string] $Function = 'remote call'
    )
    $root = Get-CallValue -Call $Call -Name 'root' -Type string -Required -Function $Function
    $trimmed = $root.TrimEnd('\')
    if ($trimmed -notmatch '^[A-Za-z]:\\[^%]+$') {
        throw ('{0}: "root" must be an absolute folder such as C:\sites\api (no drive root, no %), got "{1}"' -f $Function, $root)
    }
    return $trimmed
}

function Assert-ReleaseVersion {
    <#
    .SYNOPSIS
    Check that a release version is usable as a folder name under <root>\releases (the rule of
    models.types.ReleaseVersion: [0-9A-Za-z][0-9A-Za-z.+_-]{0,63}, no trailing dot).
    .OUTPUTS
    Nothing. Throws naming the version.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [AllowEmptyString()]
        [string] $Version,
        [string] $Function = 'remote call'
    )
    if ($Version -cnotmatch '^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$' -or $Version.EndsWith('.') -or $Version.EndsWith($script:PartialSuffix)) {
        throw ('{0}: "{1}" is not a release version usable as a folder name (letters, digits, . + _ -, at most 64)' -f $Function, $Version)
    }
}

function Get-ReleaseLayout {
    <#
    .SYNOPSIS
    Return the paths of a release root: root, releases, logs, artifacts, state (release-state.json).
    .OUTPUTS
    Ordered dictionary of [string].
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Root
    )
    return [ordered]@{
        root = $Root
        releases = Join-Path -Path $Root -ChildPath 'releases'
        logs = Join-Path -Path $Root -ChildPath 'logs'
        artifacts = Join-Path -Path $Root -ChildPath 'artifacts'
        state = Join-Path -Path $Root -ChildPath $script:ReleaseStateFileName
    }
}

function Get-Utf8NoBom {
    <#
    .SYNOPSIS
    Return a UTF-8 encoding that writes no byte order mark (web.config, release-state.json).
    #>
    [CmdletBinding()]
    param()
    return New-Object -TypeName 'System.Text.UTF8Encoding' -ArgumentList $false
}

# --- Release folders --------------------------------------------------------------------------

function Test-ReleaseComplete {
    <#
    .SYNOPSIS
    Tell whether a release folder is complete: the completion marker, manifest.json and web.config
    exist (Install-Release writes the marker last, just before the rename).
    .OUTPUTS
    [bool]
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Folder
    )
    foreach ($name in @($script:ReleaseCompleteMarker, 'manifest.json', 'web.config')) {
        if (-not [System.IO.File]::Exists((Join-Path -Path $Folder -ChildPath $name))) {
            return $false
        }
    }
    return $true
}

function Get-ReleaseCompletedAt {
    <#
    .SYNOPSIS
    Return when a release folder was completed (UTC): the time in its completion marker, else the
    marker's last write time, else the folder's.
    .OUTPUTS
    [DateTime] (UTC).
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Folder
    )
    $marker = Join-Path -Path $Folder -ChildPath $script:ReleaseCompleteMarker
    if (-not [System.IO.File]::Exists($marker)) {
        return [System.IO.Directory]::GetLastWriteTimeUtc($Folder)
    }
    $text = [System.IO.File]::ReadAllText($marker).Trim()
    $parsed = [DateTime]::MinValue
    $styles = [System.Globalization.DateTimeStyles]::RoundtripKind
    if ([DateTime]::TryParse($text, [System.Globalization.CultureInfo]::InvariantCulture, $styles, [ref]$parsed)) {
        return $parsed.ToUniversalTime()
    }
    return [System.IO.File]::GetLastWriteTimeUtc($marker)
}

function Get-ReleaseFolders {
    <#
    .SYNOPSIS
    List the release folders under <root>\releases.
    .PARAMETER Releases
    The releases folder; absent gives an empty list.
    .OUTPUTS
    [object[]] of PSCustomObject {Version, Complete, Partial, CompletedAt (UTC), Path}: complete
    releases first, oldest completion first; then the other folders (.partial builds, and folders
    under a final name without a marker), oldest first.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Releases
    )
    $folders = New-Object -TypeName 'System.Collections.Generic.List[object]'
    if (-not [System.IO.Directory]::Exists($Releases)) {
        return , $folders.ToArray()
    }
    foreach ($path in [System.IO.Directory]::GetDirectories($Releases)) {
        $name = [System.IO.Path]::GetFileName($path)
        $partial = $name.EndsWith($script:PartialSuffix, [System.StringComparison]::OrdinalIgnoreCase)
        $complete = (-not $partial) -and (Test-ReleaseComplete -Folder $path)
        $version = $name
        if ($partial) {
            $version = $name.Substring(0, $name.Length - $script:PartialSuffix.Length)
        }
        if ($complete) {
            $time = Get-ReleaseCompletedAt -Folder $path
        } else {
            $time = [System.IO.Directory]::GetLastWriteTimeUtc($path)
        }
        $folders.Add([pscustomobject]@{
                Version = $version
                Complete = $complete
                Partial = $partial
                CompletedAt = $time
                Path = $path
                Rank = [int](-not $complete)
            })
    }
    $sorted = @($folders.ToArray() | Sort-Object -Property @('Rank', 'CompletedAt', 'Version'))
    return , $sorted
}

# --- release-state.json -----------------------------------------------------------------------

function Read-ReleaseState {
    <#
    .SYNOPSIS
    Read <root>\release-state.json.
    .PARAMETER Path
    The state file; absent gives {current: $null, previous: $null, history: []}.
    .OUTPUTS
    Ordered dictionary {current, previous, history: List[object]}. Throws when the file is not
    valid JSON (it is written only by this module, atomically, so that means someone edited it).
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Path,
        [string] $Function = 'remote call'
    )
    $history = New-Object -TypeName 'System.Collections.Generic.List[object]'
    $state = [ordered]@{ current = $null; previous = $null; history = $history }
    if (-not [System.IO.File]::Exists($Path)) {
        return $state
    }
    try {
        $parsed = ConvertFrom-Json -InputObject ([System.IO.File]::ReadAllText($Path, (Get-Utf8NoBom)))
    } catch {
        throw ('{0}: {1} is not valid JSON: {2}' -f $Function, $Path, $_.Exception.Message)
    }
    if ($parsed -isnot [System.Management.Automation.PSCustomObject]) {
        throw ('{0}: {1} must hold a JSON object' -f $Function, $Path)
    }
    $state['current'] = Get-CallValue -Call $parsed -Name 'current'
    $state['previous'] = Get-CallValue -Call $parsed -Name 'previous'
    # Assigned first: a function returning an array returns it as ONE pipeline object.
    $entries = Get-CallValue -Call $parsed -Name 'history'
    if ($null -ne $entries) {
        foreach ($entry in $entries) {
            $history.Add($entry)
        }
    }
    return $state
}

function Write-ReleaseState {
    <#
    .SYNOPSIS
    Write <root>\release-state.json atomically: UTF-8 (no BOM) to <file>.tmp, then File.Replace
    over the old file (File.Move when there is none), so a reader never sees half a file.
    .PARAMETER Path
    The state file.
    .PARAMETER State
    Ordered dictionary {current, previous, history: List[object]}; history is cut to the newest
    $script:ReleaseHistoryLimit (100) entries.
    .OUTPUTS
    Nothing. Throws when the file cannot be written.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Path,
        [Parameter(Mandatory = $true)]
        [System.Collections.IDictionary] $State,
        [string] $Function = 'remote call'
    )
    $history = $State['history']
    while ($history.Count -gt $script:ReleaseHistoryLimit) {
        $history.RemoveAt(0)
    }
    $document = [ordered]@{
        current = $State['current']
        previous = $State['previous']
        history = $history.ToArray()
    }
    $text = (ConvertTo-Json -InputObject $document -Depth 6) + "`n"
    $temp = $Path + '.tmp'
    try {
        [System.IO.File]::WriteAllText($temp, $text, (Get-Utf8NoBom))
        if ([System.IO.File]::Exists($Path)) {
            [System.IO.File]::Replace($temp, $Path, $null)
        } else {
            [System.IO.File]::Move($temp, $Path)
        }
    } catch {
        throw ('{0}: cannot write {1}: {2}' -f $Function, $Path, $_.Exception.Message)
    }
}

function New-ReleaseHistoryEntry {
    <#
    .SYNOPSIS
    One "history" entry of release-state.json: {at: UTC "yyyy-MM-ddTHH:mm:ssZ", from, to, ok},
    plus "status" (the last health status, or null when nothing answered) for a failed attempt.
    #>
    [CmdletBinding()]
    param(
        [AllowNull()]
        [object] $From,
        [Parameter(Mandatory = $true)]
        [string] $To,
        [Parameter(Mandatory = $true)]
        [bool] $Ok,
        [AllowNull()]
        [object] $Status = $null
    )
    $entry = [ordered]@{
        at = [DateTime]::UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", [System.Globalization.CultureInfo]::InvariantCulture)
        from = $From
        to = $To
        ok = $Ok
    }
    if (-not $Ok) {
        $entry['status'] = $Status
    }
    return $entry
}

function Get-ReleaseRootState {
    <#
    .SYNOPSIS
    The "releases" part of Get-HostState.
    .PARAMETER Roots
    Release roots (the release_roots argument; empty gives an empty dictionary).
    .OUTPUTS
    Ordered dictionary root (without a trailing backslash) -> {current, previous, versions:
    [{version, complete}], history}; a root that does not exist gives nulls and empty lists.
    "versions": complete releases by completion time, oldest first, then incomplete folders
    (complete: false).
    Throws when a root is not an absolute folder or its release-state.json is not valid JSON.
    #>
    [CmdletBinding()]
    param(
        [AllowEmptyCollection()]
        [string[]] $Roots = @(),
        [string] $Function = 'remote call'
    )
    $result = [ordered]@{}
    foreach ($root in $Roots) {
        $trimmed = $root.TrimEnd('\')
        if ($trimmed -notmatch '^[A-Za-z]:\\[^%]+$') {
            throw ('{0}: release_roots holds "{1}"; expected an absolute folder such as C:\sites\api' -f $Function, $root)
        }
        $layout = Get-ReleaseLayout -Root $trimmed
        $state = Read-ReleaseState -Path $layout['state'] -Function $Function
        $versions = New-Object -TypeName 'System.Collections.Generic.List[object]'
        foreach ($folder in (Get-ReleaseFolders -Releases $layout['releases'])) {
            $versions.Add([ordered]@{ version = $folder.Version; complete = $folder.Complete })
        }
        $result[$trimmed] = [ordered]@{
            current = $state['current']
            previous = $state['previous']
            versions = $versions.ToArray()
            history = $state['history'].ToArray()
        }
    }
    return $result
}

# --- Unpacking and verifying ------------------------------------------------------------------

function Initialize-ZipSupport {
    <#
    .SYNOPSIS
    Load System.IO.Compression.FileSystem (ZipFile, ZipFileExtensions; .NET Framework 4.5+).
    #>
    [CmdletBinding()]
    param()
    if ($null -eq ('System.IO.Compression.ZipFile' -as [type])) {
        Add-Type -AssemblyName 'System.IO.Compression.FileSystem'
    }
}

function Resolve-ReleaseEntryPath {
    <#
    .SYNOPSIS
    Map a path of the artifact ("app/main.py") to a path inside the release folder, refusing any
    that would land outside it (zip slip).
    .PARAMETER Folder
    The release folder (absolute).
    .PARAMETER Name
    The entry name, '/'-separated (a trailing '/' marks a folder entry).
    .OUTPUTS
    [string] the absolute path. Throws when the name is empty, rooted, holds a drive or stream
    colon or a '..' segment, or resolves outside Folder.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Folder,
        [Parameter(Mandatory = $true)]
        [AllowEmptyString()]
        [string] $Name
    )
    $relative = $Name.Replace('/', '\')
    $segments = $relative.TrimEnd('\').Split([char]'\')
    if ($relative.Length -eq 0 -or $relative.StartsWith('\') -or $relative.IndexOf(':') -ge 0 -or $segments -contains '..') {
        throw ('entry "{0}" would be written outside the release folder; the artifact is refused' -f $Name)
    }
    $base = [System.IO.Path]::GetFullPath($Folder).TrimEnd('\') + '\'
    try {
        $full = [System.IO.Path]::GetFullPath([System.IO.Path]::Combine($base, $relative))
    } catch {
        throw ('entry "{0}" is not a valid Windows path: {1}' -f $Name, $_.Exception.Message)
    }
    if (-not $full.StartsWith($base, [System.StringComparison]::OrdinalIgnoreCase)) {
        throw ('entry "{0}" would be written outside the release folder; the artifact is refused' -f $Name)
    }
    return $full
}

function Read-ArchiveManifestBytes {
    <#
    .SYNOPSIS
    Return the bytes of manifest.json inside an artifact zip, without unpacking anything else.
    .OUTPUTS
    [byte[]]. Throws when the zip cannot be read or has no manifest.json.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Archive
    )
    Initialize-ZipSupport
    $zip = [System.IO.Compression.ZipFile]::OpenRead($Archive)
    try {
        $entry = $zip.GetEntry('manifest.json')
        if ($null -eq $entry) {
            throw ('{0} has no manifest.json: not a release artifact' -f $Archive)
        }
        $stream = $entry.Open()
        $buffer = New-Object -TypeName 'System.IO.MemoryStream'
        try {
            $stream.CopyTo($buffer)
            return , $buffer.ToArray()
        } finally {
            $stream.Dispose()
            $buffer.Dispose()
        }
    } finally {
        $zip.Dispose()
    }
}

function Expand-ReleaseArchive {
    <#
    .SYNOPSIS
    Unpack an artifact zip into an (empty) folder, entry by entry, refusing entries that escape it.
    .PARAMETER Archive
    The zip.
    .PARAMETER Destination
    The folder (the release's .partial folder).
    .OUTPUTS
    [string[]] the names of the file entries written ('/'-separated, as in the zip). Throws on a
    zip-slip entry, a duplicate entry or an unreadable zip.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Archive,
        [Parameter(Mandatory = $true)]
        [string] $Destination
    )
    Initialize-ZipSupport
    $names = New-Object -TypeName 'System.Collections.Generic.List[string]'
    $zip = [System.IO.Compression.ZipFile]::OpenRead($Archive)
    try {
        foreach ($entry in $zip.Entries) {
            $name = [string]$entry.FullName
            $target = Resolve-ReleaseEntryPath -Folder $Destination -Name $name
            if ($name.EndsWith('/') -or $name.EndsWith('\')) {
                [void][System.IO.Directory]::CreateDirectory($target)
                continue
            }
            [void][System.IO.Directory]::CreateDirectory([System.IO.Path]::GetDirectoryName($target))
            # overwrite $false: two entries with the same name (a crafted zip) fail here.
            [System.IO.Compression.ZipFileExtensions]::ExtractToFile($entry, $target, $false)
            $names.Add($name)
        }
    } finally {
        $zip.Dispose()
    }
    return , $names.ToArray()
}

function Read-ReleaseManifest {
    <#
    .SYNOPSIS
    Parse <release>\manifest.json and check what Install-Release relies on.
    .PARAMETER Path
    The manifest file.
    .PARAMETER Version
    The version asked for; the manifest's "version" must be the same.
    .OUTPUTS
    PSCustomObject (the manifest). Throws when it is not JSON, has no "files" object, or is for
    another version.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Path,
        [Parameter(Mandatory = $true)]
        [string] $Version
    )
    try {
        $manifest = ConvertFrom-Json -InputObject ([System.IO.File]::ReadAllText($Path, (Get-Utf8NoBom)))
    } catch {
        throw ('manifest.json is not valid JSON: {0}' -f $_.Exception.Message)
    }
    if ($manifest -isnot [System.Management.Automation.PSCustomObject]) {
        throw 'manifest.json must hold a JSON object'
    }
    [void](Get-CallValue -Call $manifest -Name 'files' -Type object -Required -Function 'manifest.json')
    $declared = [string](Get-CallValue -Call $manifest -Name 'version')
    if ($declared -cne $Version) {
        throw ('the artifact is release "{0}", not "{1}"' -f $declared, $Version)
    }
    return $manifest
}

function Test-ReleaseFiles {
    <#
    .SYNOPSIS
    Compare the unpacked files with manifest.json: every listed file present with its size and
    SHA-256, and no file that the manifest does not list (manifest.json itself excepted).
    .PARAMETER Folder
    The unpacked release.
    .PARAMETER Manifest
    The parsed manifest (Read-ReleaseManifest).
    .PARAMETER Extracted
    The file entries written by Expand-ReleaseArchive.
    .OUTPUTS
    [int] the number of files verified. Throws listing the first 10 problems.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Folder,
        [Parameter(Mandatory = $true)]
        [System.Management.Automation.PSCustomObject] $Manifest,
        [Parameter(Mandatory = $true)]
        [AllowEmptyCollection()]
        [string[]] $Extracted
    )
    $problems = New-Object -TypeName 'System.Collections.Generic.List[string]'
    $listed = New-Object -TypeName 'System.Collections.Generic.HashSet[string]' -ArgumentList ([System.StringComparer]::OrdinalIgnoreCase)
    $files = $Manifest.files
    foreach ($name in (Get-CallMemberNames -Object $files)) {
        [void]$listed.Add($name)
        $entry = $files.PSObject.Properties[$name].Value
        $path = Resolve-ReleaseEntryPath -Folder $Folder -Name $name
        $info = Get-FileSha256Info -Path $path
        if (-not $info['exists']) {
            $problems.Add(('{0} is missing' -f $name))
            continue
        }
        $expectedSha = [string](Get-CallValue -Call $entry -Name 'sha256')
        $expectedSize = Get-CallValue -Call $entry -Name 'size'
        if ($info['sha256'] -cne $expectedSha.ToLowerInvariant() -or [long]$info['size'] -ne [long]$expectedSize) {
            $problems.Add(('{0}: expected {1} bytes sha256 {2}, found {3} bytes sha256 {4}' -f $name, $expectedSize, $expectedSha, $info['size'], $info['sha256']))
        }
    }
    foreach ($name in $Extracted) {
        if ($name -cne 'manifest.json' -and -not $listed.Contains($name)) {
            $problems.Add(('{0} is not in the manifest' -f $name))
        }
    }
    if ($problems.Count -gt 0) {
        $shown = $problems.GetRange(0, [math]::Min(10, $problems.Count)).ToArray()
        throw ('{0} file(s) do not match manifest.json: {1}' -f $problems.Count, [string]::Join('; ', $shown))
    }
    return $listed.Count
}

function Assert-PythonMatchesManifest {
    <#
    .SYNOPSIS
    Check that the base interpreter is the CPython x.y the wheelhouse was built for (manifest
    "python"), from python.exe's ProductVersion ("3.12.7") [I]; an unreadable version is not checked
    (pip would then fail with "no matching distribution").
    .OUTPUTS
    Nothing. Throws naming both versions.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Python,
        [Parameter(Mandatory = $true)]
        [System.Management.Automation.PSCustomObject] $Manifest
    )
    $wanted = [string](Get-CallValue -Call $Manifest -Name 'python' -Default '')
    $found = [string][System.Diagnostics.FileVersionInfo]::GetVersionInfo($Python).ProductVersion
    if ($wanted -match '^3\.\d+$' -and $found -match '^(3\.\d+)\.') {
        if ($Matches[1] -cne $wanted) {
            throw ('{0} is Python {1}, but the wheelhouse is for Python {2}' -f $Python, $found, $wanted)
        }
    }
}

function Invoke-ReleaseCommand {
    <#
    .SYNOPSIS
    Run one Python command of a release build (venv, pip) and throw with its output tail when it
    fails (exit code not 0, the equivalent of checking $LASTEXITCODE).
    .PARAMETER FilePath
    python.exe to run.
    .PARAMETER Arguments
    Its arguments.
    .PARAMETER WorkingDirectory
    The release's .partial folder.
    .PARAMETER Step
    What it does, for the error message.
    .OUTPUTS
    Nothing. Throws "<step> failed with exit code N; last 30 lines of output: ...".
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $FilePath,
        [Parameter(Mandatory = $true)]
        [string[]] $Arguments,
        [Parameter(Mandatory = $true)]
        [string] $WorkingDirectory,
        [Parameter(Mandatory = $true)]
        [string] $Step
    )
    # pip: no prompt, no version check against PyPI, UTF-8 output (decoded as UTF-8 by the runner).
    $environment = @{ PYTHONIOENCODING = 'utf-8'; PIP_NO_INPUT = '1'; PIP_DISABLE_PIP_VERSION_CHECK = '1' }
    $run = Invoke-HostProgram -FilePath $FilePath -Arguments $Arguments -WorkingDirectory $WorkingDirectory -Environment $environment -TimeoutSeconds $script:ReleaseProgramTimeoutSeconds -Step $Step -Function 'Install-Release'
    if ($run['exit_code'] -ne 0) {
        $output = $run['stdout'] + "`n" + $run['stderr']
        throw ('{0} failed with exit code {1}; last {2} lines of output:{3}{4}' -f $Step, $run['exit_code'], $script:ReleaseLogTailLines, "`n", (Get-TextTail -Text $output -Count $script:ReleaseLogTailLines))
    }
}

function Move-ReleaseFolder {
    <#
    .SYNOPSIS
    Rename <version>.partial to <version> (Directory.Move, one rename), retrying a few times
    ($script:ReleaseMoveTries, 1 s apart) while a file in it is held open.
    .OUTPUTS
    Nothing. Throws with the last error.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Source,
        [Parameter(Mandatory = $true)]
        [string] $Destination
    )
    for ($try = 1; $try -le $script:ReleaseMoveTries; $try++) {
        try {
            [System.IO.Directory]::Move($Source, $Destination)
            return
        } catch {
            if ($try -eq $script:ReleaseMoveTries -or [System.IO.Directory]::Exists($Destination)) {
                throw ('cannot rename {0} to {1}: {2}' -f $Source, $Destination, $_.Exception.Message)
            }
            Start-Sleep -Milliseconds $script:ReleaseMoveDelayMilliseconds
        }
    }
}

function Get-FileBytesSha256 {
    <#
    .SYNOPSIS
    Return the SHA-256 (lowercase hex) of bytes.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [AllowEmptyCollection()]
        [byte[]] $Bytes
    )
    $sha = [System.Security.Cryptography.SHA256]::Create()
    try {
        return ConvertTo-HexString -Bytes $sha.ComputeHash($Bytes)
    } finally {
        $sha.Dispose()
    }
}

function Install-Release {
    <#
    .SYNOPSIS
    Unpack, verify and install one release under <root>\releases\<version>, complete or not at all.
    .PARAMETER Json
    {"root": "C:\\sites\\api", "artifact": zip on the host, "version": "1.2.0", "python": base
    python.exe, "web_config": the web.config text}.
    .OUTPUTS
    One line {"version", "installed": bool, "path": "<root>\\releases\\<version>"}. installed is
    false, and nothing is done, when a complete <root>\releases\<version> holds the same
    manifest.json (same bytes) as the artifact.
    Steps, all in <version>.partial (a stale one is removed first): unpack (zip slip refused),
    verify every file's size and SHA-256 against manifest.json, `<python> -m venv venv`,
    `venv\Scripts\python.exe -m pip install --no-index --find-links wheelhouse -r requirements.txt
    --no-cache-dir`, write web.config (UTF-8, no BOM), write the completion marker, rename to
    <version>.
    Throws naming the step and why (program output tail for venv and pip); nothing is then under
    the final name, and the .partial folder stays for inspection (the next call replaces it).
    Throws without changing anything when <root>\releases\<version> exists with another manifest
    (a version is immutable: give a new version) or incomplete.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [AllowEmptyString()]
        [string] $Json
    )
    $function = 'Install-Release'
    $call = ConvertFrom-CallJson -Json $Json -Function $function
    $root = Get-ReleaseRootArgument -Call $call -Function $function
    $artifact = Get-CallValue -Call $call -Name 'artifact' -Type string -Required -Function $function
    $version = Get-CallValue -Call $call -Name 'version' -Type string -Required -Function $function
    $python = Get-CallValue -Call $call -Name 'python' -Type string -Required -Function $function
    $webConfig = Get-CallValue -Call $call -Name 'web_config' -Type string -Required -Function $function
    Assert-ReleaseVersion -Version $version -Function $function
    foreach ($pair in @(@('artifact', $artifact), @('python', $python))) {
        if ($pair[1] -notmatch '^[A-Za-z]:\\' -or -not [System.IO.File]::Exists($pair[1])) {
            throw ('{0}: "{1}" must be an existing file given by its absolute path, got "{2}"' -f $function, $pair[0], $pair[1])
        }
    }
    $layout = Get-ReleaseLayout -Root $root
    $final = Join-Path -Path $layout['releases'] -ChildPath $version
    $partial = $final + $script:PartialSuffix

    try {
        $artifactManifest = Get-FileBytesSha256 -Bytes (Read-ArchiveManifestBytes -Archive $artifact)
    } catch {
        throw ('{0}: cannot read the artifact {1}: {2}' -f $function, $artifact, $_.Exception.Message)
    }
    if ([System.IO.Directory]::Exists($final)) {
        if (-not (Test-ReleaseComplete -Folder $final)) {
            throw ('{0}: {1} exists but is not a complete release (no completion marker); remove it or give a new version' -f $function, $final)
        }
        $installedManifest = Get-FileBytesSha256 -Bytes ([System.IO.File]::ReadAllBytes((Join-Path -Path $final -ChildPath 'manifest.json')))
        if ($installedManifest -cne $artifactManifest) {
            throw ('{0}: release {1} is already installed at {2} from a different artifact (manifest.json differs); a version is immutable: build a new version' -f $function, $version, $final)
        }
        Write-CallResult -InputObject ([ordered]@{ version = $version; installed = $false; path = $final })
        return
    }

    $step = 'prepare'
    try {
        [void][System.IO.Directory]::CreateDirectory($layout['releases'])
        if ([System.IO.Directory]::Exists($partial)) {
            Remove-Item -LiteralPath $partial -Recurse -Force
        }
        [void][System.IO.Directory]::CreateDirectory($partial)

        $step = 'unpack'
        $extracted = Expand-ReleaseArchive -Archive $artifact -Destination $partial

        $step = 'verify'
        $manifest = Read-ReleaseManifest -Path (Join-Path -Path $partial -ChildPath 'manifest.json') -Version $version
        [void](Test-ReleaseFiles -Folder $partial -Manifest $manifest -Extracted $extracted)
        $requirements = Join-Path -Path $partial -ChildPath 'requirements.txt'
        if (-not [System.IO.File]::Exists($requirements)) {
            throw 'the artifact has no requirements.txt'
        }
        Assert-PythonMatchesManifest -Python $python -Manifest $manifest

        $step = 'venv'
        $venv = Join-Path -Path $partial -ChildPath 'venv'
        Invoke-ReleaseCommand -FilePath $python -Arguments @('-m', 'venv', $venv) -WorkingDirectory $partial -Step ('{0} -m venv' -f $python)

        $step = 'pip install'
        $venvPython = [System.IO.Path]::Combine($venv, 'Scripts', 'python.exe')
        $pipArguments = @('-m', 'pip', 'install', '--no-index', '--find-links', (Join-Path -Path $partial -ChildPath 'wheelhouse'),
            '--requirement', $requirements, '--no-cache-dir', '--disable-pip-version-check', '--no-input')
        Invoke-ReleaseCommand -FilePath $venvPython -Arguments $pipArguments -WorkingDirectory $partial -Step 'pip install --no-index'

        $step = 'web.config'
        [System.IO.File]::WriteAllText((Join-Path -Path $partial -ChildPath 'web.config'), $webConfig, (Get-Utf8NoBom))

        $step = 'complete'
        $completedAt = [DateTime]::UtcNow.ToString('o', [System.Globalization.CultureInfo]::InvariantCulture)
        [System.IO.File]::WriteAllText((Join-Path -Path $partial -ChildPath $script:ReleaseCompleteMarker), $completedAt, (Get-Utf8NoBom))
        Move-ReleaseFolder -Source $partial -Destination $final
    } catch {
        $reason = $_.Exception.Message
        if ($reason.StartsWith($function + ': ')) { $reason = $reason.Substring($function.Length + 2) }
        throw ('{0}: release {1}, step "{2}" failed: {3}{4}Nothing was installed under {5}; the partial build stays in {6} (the next Install-Release replaces it).' -f $function, $version, $step, $reason, "`n", $final, $partial)
    }
    Write-CallResult -InputObject ([ordered]@{ version = $version; installed = $true; path = $final })
}

# --- Switching --------------------------------------------------------------------------------

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
        $siteObject = $manager.Sites[$Site]
        if ($null -eq $siteObject) {
            throw ('{0}: site "{1}" does not exist' -f $Function, $Site)
        }
        $pool = $manager.ApplicationPools[$AppPool]
        if ($null -eq $pool) {
            throw ('{0}: app pool "{1}" does not exist' -f $Function, $AppPool)
        }
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
        $siteObject = $manager.Sites[$Site]
        if ($null -eq $siteObject) {
            throw ('{0}: site "{1}" does not exist' -f $Function, $Site)
        }
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
        $pool = $manager.ApplicationPools[$AppPool]
        if ($null -eq $pool) {
            throw ('{0}: app pool "{1}" does not exist' -f $Function, $AppPool)
        }
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
        [System.Management.Automation.PSCustomObject] $Call,
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

function Enable-ModernTls {
    <#
    .SYNOPSIS
    Allow TLS 1.2 for HttpWebRequest: Windows PowerShell 5.1 on .NET Framework 4.x may offer only
    SSL 3 / TLS 1.0 by default [R]; the existing protocols stay allowed.
    #>
    [CmdletBinding()]
    param()
    [System.Net.ServicePointManager]::SecurityProtocol = [System.Net.ServicePointManager]::SecurityProtocol -bor [System.Net.SecurityProtocolType]::Tls12
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
        $buffer = New-Object -TypeName 'byte[]' -ArgumentList $MaxBytes
        $total = 0
        while ($total -lt $MaxBytes) {
            $read = $stream.Read($buffer, $total, $MaxBytes - $total)
            if ($read -le 0) { break }
            $total += $read
        }
        return [System.Text.Encoding]::UTF8.GetString($buffer, 0, $total)
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

# --- Cleaning up ------------------------------------------------------------------------------

function Remove-ReleaseArtifact {
    <#
    .SYNOPSIS
    Delete the artifact of a removed release: <root>\artifacts\<app>-<version>.zip, with <app> from
    the release's manifest.json, or every *-<version>.zip there when the manifest cannot be read.
    .OUTPUTS
    Nothing. Throws when a file cannot be deleted.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Artifacts,
        [Parameter(Mandatory = $true)]
        [string] $Release,
        [Parameter(Mandatory = $true)]
        [string] $Version
    )
    if (-not [System.IO.Directory]::Exists($Artifacts)) { return }
    $app = $null
    try {
        $manifest = ConvertFrom-Json -InputObject ([System.IO.File]::ReadAllText((Join-Path -Path $Release -ChildPath 'manifest.json'), (Get-Utf8NoBom)))
        $app = [string](Get-CallValue -Call $manifest -Name 'app')
    } catch {
        $app = $null
    }
    if (-not [string]::IsNullOrEmpty($app)) {
        $candidates = @(Join-Path -Path $Artifacts -ChildPath ('{0}-{1}.zip' -f $app, $Version))
    } else {
        $candidates = @([System.IO.Directory]::GetFiles($Artifacts, ('*-{0}.zip' -f $Version)))
    }
    foreach ($path in $candidates) {
        if ([System.IO.File]::Exists($path)) {
            [System.IO.File]::Delete($path)
        }
    }
}

function Remove-OldReleases {
    <#
    .SYNOPSIS
    Keep the newest complete releases and delete the rest, with their artifacts and stale builds.
    .PARAMETER Json
    {"root": "C:\\sites\\api", "keep": 1..1000 (how many complete releases to keep)}.
    .OUTPUTS
    One line {"removed": [versions]}, oldest first. Keeps the newest `keep` complete releases by
    completion time, and never removes release-state.json's current or previous release; removes
    the others with their <root>\artifacts\<app>-<version>.zip, and every *.partial folder (not
    listed). Nothing to remove -> {"removed": []}.
    Throws naming the folder when a deletion fails (what was removed before stays removed).
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [AllowEmptyString()]
        [string] $Json
    )
    $function = 'Remove-OldReleases'
    $call = ConvertFrom-CallJson -Json $Json -Function $function
    $root = Get-ReleaseRootArgument -Call $call -Function $function
    $keep = Get-CallValue -Call $call -Name 'keep' -Type integer -Required -Minimum 1 -Maximum 1000 -Function $function
    $layout = Get-ReleaseLayout -Root $root
    $state = Read-ReleaseState -Path $layout['state'] -Function $function
    $protected = @([string]$state['current'], [string]$state['previous'])

    $folders = Get-ReleaseFolders -Releases $layout['releases']
    $complete = @($folders | Where-Object -FilterScript { $_.Complete })
    $removed = New-Object -TypeName 'System.Collections.Generic.List[string]'
    for ($index = 0; $index -lt $complete.Count - $keep; $index++) {
        $folder = $complete[$index]
        if ($protected -contains $folder.Version) { continue }
        try {
            Remove-ReleaseArtifact -Artifacts $layout['artifacts'] -Release $folder.Path -Version $folder.Version
            Remove-Item -LiteralPath $folder.Path -Recurse -Force
        } catch {
            throw ('{0}: removing release {1} ({2}) failed: {3}' -f $function, $folder.Version, $folder.Path, $_.Exception.Message)
        }
        $removed.Add($folder.Version)
    }
    foreach ($folder in $folders) {
        if (-not $folder.Partial) { continue }
        try {
            Remove-Item -LiteralPath $folder.Path -Recurse -Force
        } catch {
            throw ('{0}: removing the stale build {1} failed: {2}' -f $function, $folder.Path, $_.Exception.Message)
        }
    }
    Write-CallResult -InputObject ([ordered]@{ removed = $removed.ToArray() })
}
