# PyinfraIis module, part 91: Install-Release, one release unpacked, verified and built under
# <root>\releases\<version>, complete or not at all (layout and completion marker: part 90).
#
# Contract: docs/remote-functions.md, "Releases". Artifact layout (pyinfra_iis/release/manifest.py):
# manifest.json ("files": path -> {sha256, size} for every file but itself, "version", "python"
# x.y, "app"), requirements.txt (the Windows pins without markers), app\, wheelhouse\*.whl. The venv
# is installed offline with
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
# Inferences [I], not checked on Windows:
# - Directory.Move of <version>.partial to <version> is one rename on the same volume: a reader
#   sees either no folder or the complete one.
# - A venv moved after creation keeps working for `python.exe -m ...` (pyvenv.cfg names the base
#   interpreter, not the venv's folder); only console-script launchers (venv\Scripts\*.exe) keep
#   the .partial path, which is why web.config runs `venv\Scripts\python.exe -m uvicorn`
#   (pyinfra_iis/release/webconfig.py).

# venv creation and pip install are each given this long (seconds) before they are killed [I].
$script:ReleaseProgramTimeoutSeconds = 1800

# Renaming .partial can fail briefly while an anti-virus scanner holds a new file open [R]:
# so many tries, this many milliseconds apart.
$script:ReleaseMoveTries = 5
$script:ReleaseMoveDelayMilliseconds = 1000

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
    $manifest = Read-JsonFile -Path $Path -Label 'manifest.json'
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
        [psobject] $Manifest,
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
        [psobject] $Manifest
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
        $artifactManifest = Get-Sha256Hex -InputObject (Read-ArchiveManifestBytes -Archive $artifact)
    } catch {
        throw ('{0}: cannot read the artifact {1}: {2}' -f $function, $artifact, $_.Exception.Message)
    }
    if ([System.IO.Directory]::Exists($final)) {
        if (-not (Test-ReleaseComplete -Folder $final)) {
            throw ('{0}: {1} exists but is not a complete release (no completion marker); remove it or give a new version' -f $function, $final)
        }
        $installedManifest = Get-Sha256Hex -InputObject ([System.IO.File]::ReadAllBytes((Join-Path -Path $final -ChildPath 'manifest.json')))
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
