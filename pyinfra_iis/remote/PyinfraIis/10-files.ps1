# PyinfraIis module, part 10: file transfer through the worker (contract: docs/remote-functions.md and
# pyinfra_iis/protocol.py). An upload is Start-FileUpload, data lines (the worker calls Add-FileUploadChunk for
# each), then Complete-FileUpload: data goes to `<dir>\.<name>.pyinfra-upload`, is verified (size, SHA-256) and
# moved over the destination in one rename. Downloads read a range with Read-FileChunk.
# Docs: https://learn.microsoft.com/dotnet/api/system.io.file.open (FileShare), .../system.io.file.replace, .../system.io.file.move

# The open upload ($null, or Path, Temp, Size, Sha256, Stream, Written, Error); data lines that came while none was
# open (reported by Complete-FileUpload); the largest range Read-FileChunk returns.
$script:Upload = $null
$script:UploadOrphanChunks = 0
$script:MaxReadChunkBytes = 16MB
function Open-SharedFile {
    # Read a file another process may be writing, renaming or deleting (a live log): ReadWrite and Delete sharing.
    param([Parameter(Mandatory = $true)] [string] $Path)
    $share = [System.IO.FileShare]::ReadWrite -bor [System.IO.FileShare]::Delete
    return [System.IO.File]::Open($Path, [System.IO.FileMode]::Open, [System.IO.FileAccess]::Read, $share)
}
function Get-FileSha256Info {
    # {exists, size, sha256} of a file, streamed; a directory at Path counts as "no file".
    param([Parameter(Mandatory = $true)] [string] $Path)
    if (-not [System.IO.File]::Exists($Path)) { return [ordered]@{ exists = $false; size = $null; sha256 = $null } }
    $stream = Open-SharedFile -Path $Path
    try {
        $sha256 = Get-Sha256Hex -InputObject $stream
        return [ordered]@{ exists = $true; size = $stream.Length; sha256 = $sha256 }
    } finally { $stream.Dispose() }
}
function Get-CallFilePath {
    # The "path" member of a call: an absolute Windows path (C:\... or \\server\share\...), else a terminating error.
    param([Parameter(Mandatory = $true)] [psobject] $Call, [Parameter(Mandatory = $true)] [string] $Function)
    $path = [string](Get-CallValue -Call $Call -Name 'path' -Required -Function $Function)
    if ($path -notmatch '^(?:[A-Za-z]:\\|\\\\[^\\]+\\[^\\]+)') { throw ('{0}: "path" must be an absolute Windows path, got "{1}"' -f $Function, $path) }
    return $path
}
function Close-OpenUpload {
    # Close the open upload and delete its temp file, if any; never throws.
    $upload = $script:Upload
    $script:Upload = $null
    if ($null -eq $upload) { return }
    try { $upload.Stream.Dispose() } catch { Write-Verbose -Message ('closing {0}: {1}' -f $upload.Temp, $_.Exception.Message) }
    Remove-UploadTemp -Temp $upload.Temp
}
function Remove-UploadTemp {
    # Delete an upload temp file if it exists; never throws (the next upload of that path overwrites it).
    param([Parameter(Mandatory = $true)] [string] $Temp)
    try { if ([System.IO.File]::Exists($Temp)) { [System.IO.File]::Delete($Temp) } } catch { Write-Verbose -Message ('deleting {0}: {1}' -f $Temp, $_.Exception.Message) }
}
function Start-FileUpload {
    # -Json '{"path":"C:\\x\\y.bin","size":N,"sha256":"<hex>"}': prints {"skipped":true} when that file is already
    # there; else opens the temp file (missing folders created) and prints {"skipped":false,"temp":"<path>"}.
    param([Parameter(Mandatory = $true)] [string] $Json)
    $name = $MyInvocation.MyCommand.Name
    $call = ConvertFrom-CallJson -Json $Json -Function $name
    $path = Get-CallFilePath -Call $call -Function $name
    $size = Get-CallValue -Call $call -Name 'size' -Type integer -Required -Function $name
    $sha256 = ([string](Get-CallValue -Call $call -Name 'sha256' -Required -Function $name)).ToLowerInvariant()
    if ($sha256 -notmatch '^[0-9a-f]{64}$') { throw ('{0}: "sha256" must be 64 hex digits, got "{1}"' -f $name, $sha256) }
    Close-OpenUpload
    if ([System.IO.Directory]::Exists($path)) { throw ('{0}: cannot upload to {1}: it is a folder' -f $name, $path) }
    $existing = Get-FileSha256Info -Path $path
    if ($existing.exists -and $existing.size -eq $size -and $existing.sha256 -eq $sha256) {
        Write-CallResult -InputObject ([ordered]@{ skipped = $true })
        return
    }
    $folder = [System.IO.Path]::GetDirectoryName($path)
    [void][System.IO.Directory]::CreateDirectory($folder)
    $temp = [System.IO.Path]::Combine($folder, '.' + [System.IO.Path]::GetFileName($path) + '.pyinfra-upload')
    $stream = [System.IO.File]::Open($temp, [System.IO.FileMode]::Create, [System.IO.FileAccess]::Write, [System.IO.FileShare]::None)
    $script:Upload = @{ Path = $path; Temp = $temp; Size = $size; Sha256 = $sha256; Stream = $stream; Written = [long]0; Error = $null }
    $script:UploadOrphanChunks = 0
    Write-CallResult -InputObject ([ordered]@{ skipped = $false; temp = $temp })
}
function Add-FileUploadChunk {
    # One upload data line (base64), called by the worker. Prints nothing and never throws: the first failure is
    # kept for Complete-FileUpload and the rest of that upload's data is ignored.
    param([Parameter(Mandatory = $true)] [AllowEmptyString()] [string] $Base64)
    $upload = $script:Upload
    if ($null -eq $upload) { $script:UploadOrphanChunks += 1; return }
    if ($null -ne $upload.Error) { return }
    try {
        $bytes = [System.Convert]::FromBase64String($Base64)
        $upload.Stream.Write($bytes, 0, $bytes.Length)
        $upload.Written += $bytes.Length
    } catch {
        $upload.Error = 'writing upload data to {0} failed after {1} bytes: {2}' -f $upload.Temp, $upload.Written, $_.Exception.Message
    }
}
function Complete-FileUpload {
    # -Json '{}': checks the temp file's size and SHA-256, moves it over the destination and prints
    # {"path","size","sha256"}; otherwise deletes it and throws (expected against actual), destination untouched.
    param([Parameter(Mandatory = $true)] [string] $Json)
    $name = $MyInvocation.MyCommand.Name
    [void](ConvertFrom-CallJson -Json $Json -Function $name)
    $upload = $script:Upload
    if ($null -eq $upload) {
        $orphans = $script:UploadOrphanChunks
        $script:UploadOrphanChunks = 0
        throw ('{0}: no upload is open (Start-FileUpload first); {1} data line(s) arrived without one' -f $name, $orphans)
    }
    $script:Upload = $null
    try {
        try { $upload.Stream.Dispose() } catch { if ($null -eq $upload.Error) { $upload.Error = 'closing {0} failed: {1}' -f $upload.Temp, $_.Exception.Message } }
        if ($null -ne $upload.Error) { throw ('{0}: upload of {1} failed: {2}' -f $name, $upload.Path, $upload.Error) }
        $actual = Get-FileSha256Info -Path $upload.Temp
        if ($actual.size -ne $upload.Size -or $actual.sha256 -ne $upload.Sha256) {
            throw ('{0}: upload of {1} failed verification: expected {2} bytes with SHA-256 {3}, received {4} bytes with SHA-256 {5}' -f
                $name, $upload.Path, $upload.Size, $upload.Sha256, $actual.size, $actual.sha256)
        }
        Move-FileIntoPlace -Temp $upload.Temp -Path $upload.Path
    } catch {
        Remove-UploadTemp -Temp $upload.Temp
        throw
    }
    Write-CallResult -InputObject ([ordered]@{ path = $upload.Path; size = $actual.size; sha256 = $actual.sha256 })
}
function Move-FileIntoPlace([string]$Temp, [string]$Path) {
    # Path := Temp in one rename, retried on sharing violations (antivirus, indexer). No backup: [NullString]::Value
    # ($null would reach File.Replace as ''). ReplaceFile's error 1176 leaves Path gone and Temp in place: Temp is moved.
    # Docs: https://learn.microsoft.com/dotnet/api/system.io.file.replace https://learn.microsoft.com/windows/win32/api/winbase/nf-winbase-replacefilew
    $attempt = 0
    while ($true) {
        try {
            if ([System.IO.File]::Exists($Path)) { [System.IO.File]::Replace($Temp, $Path, [NullString]::Value) } else { [System.IO.File]::Move($Temp, $Path) }
            return
        } catch {
            if (-not [System.IO.File]::Exists($Path) -and [System.IO.File]::Exists($Temp)) { [System.IO.File]::Move($Temp, $Path); return }
            if (++$attempt -ge 5) { throw }
            Start-Sleep -Milliseconds (200 * $attempt)
        }
    }
}
function Stop-FileUpload {
    # -Json '{}': discard the open upload, if any (its temp file deleted). Prints {}.
    param([Parameter(Mandatory = $true)] [string] $Json)
    [void](ConvertFrom-CallJson -Json $Json -Function $MyInvocation.MyCommand.Name)
    Close-OpenUpload
    $script:UploadOrphanChunks = 0
    Write-CallResult -InputObject @{}
}
function Get-FileHashInfo {
    # -Json '{"path":"C:\\x\\y.bin"}': {"exists":true,"size":N,"sha256":"<hex>"} or {"exists":false,...} (also a folder).
    param([Parameter(Mandatory = $true)] [string] $Json)
    $name = $MyInvocation.MyCommand.Name
    $call = ConvertFrom-CallJson -Json $Json -Function $name
    Write-CallResult -InputObject (Get-FileSha256Info -Path (Get-CallFilePath -Call $call -Function $name))
}
function Read-FileChunk {
    # -Json '{"path":...,"offset":N,"length":N}': base64 of bytes [offset, offset+length) on one line, fewer at the
    # end, nothing past it; length at most 16 MiB. Throws when the file does not exist.
    param([Parameter(Mandatory = $true)] [string] $Json)
    $name = $MyInvocation.MyCommand.Name
    $call = ConvertFrom-CallJson -Json $Json -Function $name
    $path = Get-CallFilePath -Call $call -Function $name
    $offset = Get-CallValue -Call $call -Name 'offset' -Type integer -Required -Function $name
    $length = Get-CallValue -Call $call -Name 'length' -Type integer -Required -Maximum $script:MaxReadChunkBytes -Function $name
    if (-not [System.IO.File]::Exists($path)) { throw ('{0}: file not found: {1}' -f $name, $path) }
    $stream = Open-SharedFile -Path $path
    try {
        if ($offset -ge $stream.Length -or $length -eq 0) { return }
        [void]$stream.Seek($offset, [System.IO.SeekOrigin]::Begin)
        $bytes = Read-StreamBytes -Stream $stream -Count ([int][math]::Min($length, $stream.Length - $offset))
    } finally { $stream.Dispose() }
    Write-Output -InputObject ([System.Convert]::ToBase64String($bytes))
}
