# PyinfraIis module, part 90: release roots as raw data, and atomic small-file writes.
# Layout of a root: artifacts\<app>-<version>.zip, releases\<version>\ (complete once its
# .pyinfra-iis-complete marker exists: written last; its write time orders releases), logs\,
# release-state.json. What is
# complete, current or removable is decided on the controller (pyinfra_iis/facts/release_state.py).

$script:ReleaseCompleteMarker = '.pyinfra-iis-complete'

function Get-ReleaseRootState {
    # The "releases" part of Get-HostState: root -> {state: release-state.json text or null,
    # folders: [{name, marker: the marker's last write time (UTC, "o") or null, web_config_sha256}],
    # logs: [{name, size, modified}], services: {"<slot>\<id>.xml": ConvertTo-SecretDigest of the ARR slot's WinSW XML}}.
    # Docs: https://learn.microsoft.com/dotnet/api/system.io.directoryinfo.getdirectories?view=netframework-4.8
    # Docs: https://learn.microsoft.com/dotnet/api/system.io.file.readalltext?view=netframework-4.8
    [CmdletBinding()]
    param([AllowEmptyCollection()] [string[]] $Roots = @(), [string] $Function = 'remote call', [byte[]] $DigestKey = $null)
    $utf8 = New-Object -TypeName 'System.Text.UTF8Encoding' -ArgumentList $false
    $result = [ordered]@{}
    foreach ($root in $Roots) {
        $trimmed = $root.TrimEnd('\')
        if ($trimmed -notmatch '^[A-Za-z]:\\[^%]+$') { throw ('{0}: release_roots holds "{1}"; expected an absolute folder' -f $Function, $root) }
        $stateFile = Join-Path -Path $trimmed -ChildPath 'release-state.json'
        $state = $null
        if ([System.IO.File]::Exists($stateFile)) { $state = [System.IO.File]::ReadAllText($stateFile, $utf8) }
        $folders = New-Object -TypeName 'System.Collections.Generic.List[object]'
        $releases = New-Object -TypeName 'System.IO.DirectoryInfo' -ArgumentList (Join-Path -Path $trimmed -ChildPath 'releases')
        if ($releases.Exists) {
            foreach ($folder in $releases.GetDirectories()) {
                $marker = Join-Path -Path $folder.FullName -ChildPath $script:ReleaseCompleteMarker
                $webConfig = Join-Path -Path $folder.FullName -ChildPath 'web.config'
                $entry = [ordered]@{ name = $folder.Name; marker = $null; web_config_sha256 = $null }
                if ([System.IO.File]::Exists($marker)) { $entry['marker'] = [System.IO.File]::GetLastWriteTimeUtc($marker).ToString('o', [System.Globalization.CultureInfo]::InvariantCulture) }
                if ([System.IO.File]::Exists($webConfig)) { $entry['web_config_sha256'] = Get-Sha256Hex -InputObject ([System.IO.File]::ReadAllBytes($webConfig)) }
                [void]$folders.Add($entry)
            }
        }
        $logs = New-Object -TypeName 'System.Collections.Generic.List[object]'
        $logFolder = New-Object -TypeName 'System.IO.DirectoryInfo' -ArgumentList (Join-Path -Path $trimmed -ChildPath 'logs')
        if ($logFolder.Exists) {
            foreach ($file in $logFolder.GetFiles()) {
                [void]$logs.Add([ordered]@{ name = $file.Name; size = $file.Length; modified = $file.LastWriteTimeUtc.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", [System.Globalization.CultureInfo]::InvariantCulture) })
            }
        }
        $services = [ordered]@{}
        $serviceFolder = New-Object -TypeName 'System.IO.DirectoryInfo' -ArgumentList (Join-Path -Path $trimmed -ChildPath 'services')
        if ($serviceFolder.Exists -and $null -ne $DigestKey) {
            foreach ($file in $serviceFolder.GetFiles('*.xml', [System.IO.SearchOption]::AllDirectories)) { $services[$file.Directory.Name + '\' + $file.Name] = ConvertTo-SecretDigest -Value ([System.IO.File]::ReadAllText($file.FullName, $utf8)) -Key $DigestKey }
        }
        $result[$trimmed] = [ordered]@{ state = $state; folders = $folders.ToArray(); logs = $logs.ToArray(); services = $services }
    }
    return $result
}

function Write-TextFile {
    # Remote primitive: write a small UTF-8 (no BOM) file atomically: a random temporary name in
    # the same folder created with CreateNew, then File.Replace over the target (File.Move when
    # there is none). {"path", "text"} -> {"written": true}
    # Docs: https://learn.microsoft.com/dotnet/api/system.io.file.replace?view=netframework-4.8
    # Docs: https://learn.microsoft.com/dotnet/api/system.io.filemode?view=netframework-4.8
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [AllowEmptyString()] [string] $Json)
    $function = 'Write-TextFile'
    $call = ConvertFrom-CallJson -Json $Json -Function $function
    $path = Get-CallValue -Call $call -Name 'path' -Type string -Required -Function $function
    $text = Get-CallValue -Call $call -Name 'text' -Type string -Default '' -Function $function
    if ($path -notmatch '^[A-Za-z]:\\') { throw ('{0}: "path" must be an absolute drive path' -f $function) }
    $temp = Join-Path -Path ([System.IO.Path]::GetDirectoryName($path)) -ChildPath ('.{0}.{1}.tmp' -f [System.IO.Path]::GetFileName($path), [System.IO.Path]::GetRandomFileName())
    $bytes = (New-Object -TypeName 'System.Text.UTF8Encoding' -ArgumentList $false).GetBytes($text)
    try {
        $stream = New-Object -TypeName 'System.IO.FileStream' -ArgumentList $temp, ([System.IO.FileMode]::CreateNew), ([System.IO.FileAccess]::Write), ([System.IO.FileShare]::None)
        try { $stream.Write($bytes, 0, $bytes.Length); $stream.Flush($true) } finally { $stream.Dispose() }
        Move-FileIntoPlace -Temp $temp -Path $path  # 10-files.ps1: File.Replace, never losing the file on error 1176
    } catch {
        if ([System.IO.File]::Exists($temp)) { [System.IO.File]::Delete($temp) }
        throw ('{0}: cannot write {1}: {2}' -f $function, $path, $_.Exception.Message)
    }
    Write-CallResult -InputObject ([ordered]@{ written = $true })
}
