# PyinfraIis module, part 91: Install-Release, the artifact checked and unpacked into a release
# folder, and the folder listed. The controller compares the listing with the manifest of the
# artifact it holds, builds the venv (Invoke-Program) and writes web.config and the completion
# marker (Write-TextFile).

function Get-FileListing {
    # Every file under Folder: [{path ('/'-separated, relative), size, sha256}], sorted by path.
    # Docs: https://learn.microsoft.com/dotnet/api/system.io.directoryinfo.enumeratefiles?view=netframework-4.8
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [string] $Folder)
    $root = (New-Object -TypeName 'System.IO.DirectoryInfo' -ArgumentList $Folder).FullName.TrimEnd('\') + '\'
    $files = New-Object -TypeName 'System.Collections.Generic.List[object]'
    foreach ($file in (New-Object -TypeName 'System.IO.DirectoryInfo' -ArgumentList $Folder).EnumerateFiles('*', [System.IO.SearchOption]::AllDirectories)) {
        $stream = New-Object -TypeName 'System.IO.FileStream' -ArgumentList $file.FullName, ([System.IO.FileMode]::Open), ([System.IO.FileAccess]::Read), ([System.IO.FileShare]::ReadWrite -bor [System.IO.FileShare]::Delete)
        try { $sha = Get-Sha256Hex -InputObject $stream } finally { $stream.Dispose() }
        [void]$files.Add([ordered]@{ path = $file.FullName.Substring($root.Length).Replace('\', '/'); size = $file.Length; sha256 = $sha })
    }
    return , @($files.ToArray() | Sort-Object -Property { $_['path'] })
}

function Install-Release {
    # Remote primitive: check the artifact's SHA-256 (sent by the controller) BEFORE unpacking,
    # refuse entries that leave the destination, unpack over it, list every file there.
    # {"artifact", "sha256", "destination"} -> {"files": [{path, size, sha256}]}
    # Docs: https://learn.microsoft.com/dotnet/api/system.io.compression.zipfile.openread?view=netframework-4.8
    # Docs: https://learn.microsoft.com/dotnet/api/system.io.compression.zipfileextensions.extracttofile?view=netframework-4.8
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [AllowEmptyString()] [string] $Json)
    $function = 'Install-Release'
    $call = ConvertFrom-CallJson -Json $Json -Function $function
    $artifact = Get-CallValue -Call $call -Name 'artifact' -Type string -Required -Function $function
    $sha256 = Get-CallValue -Call $call -Name 'sha256' -Type string -Required -Function $function
    $destination = (Get-CallValue -Call $call -Name 'destination' -Type string -Required -Function $function).TrimEnd('\')
    if ($destination -notmatch '^[A-Za-z]:\\[^%]+$') { throw ('{0}: "destination" must be an absolute folder' -f $function) }
    if (-not [System.IO.File]::Exists($artifact)) { throw ('{0}: {1} does not exist (upload it first)' -f $function, $artifact) }
    Assert-FileSha256 -Path $artifact -Expected $sha256 -Function $function
    Add-Type -AssemblyName System.IO.Compression.FileSystem
    $prefix = [System.IO.Path]::GetFullPath($destination + '\')
    $archive = [System.IO.Compression.ZipFile]::OpenRead($artifact)
    try {
        foreach ($entry in $archive.Entries) {
            $target = [System.IO.Path]::GetFullPath((Join-Path -Path $destination -ChildPath $entry.FullName))
            if (-not $target.StartsWith($prefix, [System.StringComparison]::OrdinalIgnoreCase)) {
                throw ('{0}: refusing the archive entry "{1}" (outside {2})' -f $function, $entry.FullName, $destination)
            }
        }
        [void][System.IO.Directory]::CreateDirectory($destination)
        foreach ($entry in $archive.Entries) {
            if ($entry.FullName.EndsWith('/')) { continue }
            $target = [System.IO.Path]::GetFullPath((Join-Path -Path $destination -ChildPath $entry.FullName))
            [void][System.IO.Directory]::CreateDirectory([System.IO.Path]::GetDirectoryName($target))
            [System.IO.Compression.ZipFileExtensions]::ExtractToFile($entry, $target, $true)
        }
    } finally {
        $archive.Dispose()
    }
    Write-CallResult -InputObject ([ordered]@{ files = (Get-FileListing -Folder $destination) })
}
