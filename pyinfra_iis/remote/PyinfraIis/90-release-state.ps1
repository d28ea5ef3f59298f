# PyinfraIis module, part 90: releases of the app, what parts 91-94 share (arguments, the layout
# of a release root, release folders, release-state.json) and the "releases" part of Get-HostState.
#
# Contract: docs/remote-functions.md, "Releases"; design.md, "Releases". Parts: 91 installs a
# release (Install-Release), 92 checks its health, 93 switches a site to it (Switch-Release), 94
# cleans up (Remove-OldReleases). Host layout under a release root
# (models.release.ReleaseSettings.root):
#     <root>\artifacts\<app>-<version>.zip   <root>\releases\<version>\   <root>\releases\<version>.partial\
#     <root>\logs\                           <root>\release-state.json
# A folder exists under its final name only when it is COMPLETE: everything is built in
# <version>.partial, and the last step writes the completion marker and renames the folder.
#
# The completion marker: <release>\.pyinfra-iis-complete holds the UTC time the build completed
# ("o" round-trip format). Get-HostState and Remove-OldReleases order releases by it (the folder's
# last write time when it is missing). Complete = the marker, manifest.json and web.config exist.
#
# File.Replace replaces the state file in one step (backup name may be null) [V]:
# https://learn.microsoft.com/dotnet/api/system.io.file.replace

$script:ReleaseStateFileName = 'release-state.json'
$script:ReleaseCompleteMarker = '.pyinfra-iis-complete'
$script:PartialSuffix = '.partial'

# Entries kept in release-state.json "history" (oldest dropped first).
$script:ReleaseHistoryLimit = 100

# Lines of program output (venv, pip) and of the app's stdout log in an error (30, contract).
$script:ReleaseLogTailLines = 30

# --- Arguments and layout

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
        [psobject] $Call,
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

function Read-JsonFile {
    <#
    .SYNOPSIS
    Parse a UTF-8 JSON file that holds one object (release-state.json, manifest.json).
    .PARAMETER Path
    The file.
    .PARAMETER Label
    How error messages name the file.
    .OUTPUTS
    PSCustomObject. Throws '<Label> is not valid JSON: <reason>' (also when the file cannot be
    read) or '<Label> must hold a JSON object'.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Path,
        [Parameter(Mandatory = $true)]
        [string] $Label
    )
    try {
        $parsed = ConvertFrom-Json -InputObject ([System.IO.File]::ReadAllText($Path, (Get-Utf8NoBom)))
    } catch {
        throw ('{0} is not valid JSON: {1}' -f $Label, $_.Exception.Message)
    }
    if ($parsed -isnot [System.Management.Automation.PSCustomObject]) {
        throw ('{0} must hold a JSON object' -f $Label)
    }
    return $parsed
}

# --- Release folders

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

# --- release-state.json

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
    $parsed = Read-JsonFile -Path $Path -Label ('{0}: {1}' -f $Function, $Path)
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
    [{version, complete, web_config_sha256}], history}; a root that does not exist gives nulls and
    empty lists. web_config_sha256: SHA-256 (hex) of a complete release's web.config, else null.
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
            # The installed web.config's hash lets the controller tell when the inventory now
            # renders another one (settings changed since the release was installed).
            $webConfigSha256 = $null
            $webConfig = Join-Path -Path $folder.Path -ChildPath 'web.config'
            if ($folder.Complete -and [System.IO.File]::Exists($webConfig)) {
                $webConfigSha256 = Get-Sha256Hex -InputObject ([System.IO.File]::ReadAllBytes($webConfig))
            }
            $versions.Add([ordered]@{ version = $folder.Version; complete = $folder.Complete; web_config_sha256 = $webConfigSha256 })
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
