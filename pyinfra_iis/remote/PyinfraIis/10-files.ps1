# PyinfraIis module, part 10: file transfer through the worker (contract: docs/remote-functions.md
# and pyinfra_iis/protocol.py, "Upload data").
#
# An upload is Start-FileUpload, then upload data lines (the worker calls Add-FileUploadChunk for
# each), then Complete-FileUpload. Data goes to a temp file beside the destination,
# `<dir>\.<name>.pyinfra-upload`, which is verified (size and SHA-256) and then moved over the
# destination in one rename, so the destination is never partial. Downloads read a range with
# Read-FileChunk. The simulator implements the same contract in Python.

# The open upload, or $null: a hashtable with Path, Temp, Size, Sha256 (expected, lowercase hex),
# Stream (the temp file, open for writing), Written (bytes) and Error (first failure, or $null).
$script:Upload = $null
# Upload data lines that arrived while no upload was open (reported by Complete-FileUpload).
$script:UploadOrphanChunks = 0

# Largest range Read-FileChunk returns in one call: 16 MiB keeps the reply (base64, then UTF-8
# JSON of the reply frame) well inside the worker's memory; the connector asks for far less (one
# WinRM envelope, MaxEnvelopeSizekb 500 by default; field notes, WinRM).
$script:MaxReadChunkBytes = 16MB

function Get-FileSha256Info {
    <#
    .SYNOPSIS
    Size (bytes) and SHA-256 (lowercase hex) of a file, streamed.
    .OUTPUTS
    [ordered]@{ exists = $true|$false; size = long|$null; sha256 = string|$null }. A directory at
    Path counts as "no file".
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Path
    )
    if (-not [System.IO.File]::Exists($Path)) {
        return [ordered]@{ exists = $false; size = $null; sha256 = $null }
    }
    $stream = [System.IO.File]::Open($Path, [System.IO.FileMode]::Open, [System.IO.FileAccess]::Read, [System.IO.FileShare]::Read)
    try {
        $sha256 = Get-Sha256Hex -InputObject $stream
        return [ordered]@{ exists = $true; size = $stream.Length; sha256 = $sha256 }
    } finally {
        $stream.Dispose()
    }
}

function Get-CallFilePath {
    <#
    .SYNOPSIS
    Read the "path" member of a -Json argument: an absolute Windows path (C:\... or \\server\share\...).
    Throws when it is absent or relative (a relative path would depend on the worker's directory).
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [psobject] $Call,
        [Parameter(Mandatory = $true)]
        [string] $Function
    )
    $path = [string](Get-CallValue -Call $Call -Name 'path' -Required -Function $Function)
    if ($path -notmatch '^(?:[A-Za-z]:\\|\\\\[^\\]+\\[^\\]+)') {
        throw ('{0}: "path" must be an absolute Windows path, got "{1}"' -f $Function, $path)
    }
    return $path
}

function Close-OpenUpload {
    <#
    .SYNOPSIS
    Close and delete the open upload's temp file, if any; never throws.
    #>
    [CmdletBinding()]
    param()
    $upload = $script:Upload
    $script:Upload = $null
    if ($null -eq $upload) { return }
    try { $upload.Stream.Dispose() } catch { Write-Verbose -Message ('closing {0}: {1}' -f $upload.Temp, $_.Exception.Message) }
    Remove-UploadTemp -Temp $upload.Temp
}

function Remove-UploadTemp {
    <#
    .SYNOPSIS
    Delete an upload temp file if it exists; never throws (a leftover temp is overwritten by the
    next upload of the same destination).
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Temp
    )
    try {
        if ([System.IO.File]::Exists($Temp)) { [System.IO.File]::Delete($Temp) }
    } catch {
        Write-Verbose -Message ('deleting {0}: {1}' -f $Temp, $_.Exception.Message)
    }
}

function Start-FileUpload {
    <#
    .SYNOPSIS
    Open an upload: -Json '{"path":"C:\\x\\y.bin","size":N,"sha256":"<hex>"}'.
    .DESCRIPTION
    Prints {"skipped":true} when a file with that size and SHA-256 is already at path (nothing to
    send). Otherwise discards any upload still open, creates missing parent folders, opens the temp
    file <dir>\.<name>.pyinfra-upload (truncated) and prints {"skipped":false,"temp":"<temp path>"}.
    size is in bytes (0 .. 2^63-1); sha256 is 64 hex digits, either case.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Json
    )
    $name = $MyInvocation.MyCommand.Name
    $call = ConvertFrom-CallJson -Json $Json -Function $name
    $path = Get-CallFilePath -Call $call -Function $name
    $size = Get-CallValue -Call $call -Name 'size' -Type integer -Required -Function $name
    $sha256 = ([string](Get-CallValue -Call $call -Name 'sha256' -Required -Function $name)).ToLowerInvariant()
    if ($sha256 -notmatch '^[0-9a-f]{64}$') {
        throw ('{0}: "sha256" must be 64 hex digits, got "{1}"' -f $name, $sha256)
    }

    Close-OpenUpload
    if ([System.IO.Directory]::Exists($path)) {
        throw ('{0}: cannot upload to {1}: it is a folder' -f $name, $path)
    }
    $existing = Get-FileSha256Info -Path $path
    if ($existing.exists -and $existing.size -eq $size -and $existing.sha256 -eq $sha256) {
        Write-CallResult -InputObject ([ordered]@{ skipped = $true })
        return
    }

    $folder = [System.IO.Path]::GetDirectoryName($path)
    [void][System.IO.Directory]::CreateDirectory($folder)
    $temp = [System.IO.Path]::Combine($folder, '.' + [System.IO.Path]::GetFileName($path) + '.pyinfra-upload')
    $stream = [System.IO.File]::Open($temp, [System.IO.FileMode]::Create, [System.IO.FileAccess]::Write, [System.IO.FileShare]::None)
    $script:Upload = @{
        Path = $path
        Temp = $temp
        Size = $size
        Sha256 = $sha256
        Stream = $stream
        Written = [long]0
        Error = $null
    }
    $script:UploadOrphanChunks = 0
    Write-CallResult -InputObject ([ordered]@{ skipped = $false; temp = $temp })
}

function Add-FileUploadChunk {
    <#
    .SYNOPSIS
    Append one upload data line (base64) to the open upload. Called by the worker, not by remote calls.
    .DESCRIPTION
    Prints nothing and never throws into the worker's loop: a failure (no upload open, bad base64,
    write error) is remembered and reported by Complete-FileUpload. After the first failure the
    remaining data of that upload is ignored.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [AllowEmptyString()]
        [string] $Base64
    )
    try {
        $upload = $script:Upload
        if ($null -eq $upload) {
            $script:UploadOrphanChunks += 1
            return
        }
        if ($null -ne $upload.Error) { return }
        try {
            $bytes = [System.Convert]::FromBase64String($Base64)
            $upload.Stream.Write($bytes, 0, $bytes.Length)
            $upload.Written += $bytes.Length
        } catch {
            $upload.Error = 'writing upload data to {0} failed after {1} bytes: {2}' -f $upload.Temp, $upload.Written, $_.Exception.Message
        }
    } catch {
        # Only reachable if the module state itself is broken; the worker ignores errors here.
        Write-Verbose -Message ('Add-FileUploadChunk: {0}' -f $_.Exception.Message)
    }
}

function Complete-FileUpload {
    <#
    .SYNOPSIS
    Finish the open upload: -Json '{}'.
    .DESCRIPTION
    Checks the temp file's size and SHA-256 against Start-FileUpload's; on success moves it over the
    destination (File.Replace when one exists, else File.Move: one rename on the same volume) and
    prints {"path":...,"size":N,"sha256":"<lowercase hex>"}. Otherwise deletes the temp file and
    throws a terminating error saying why (expected against actual); the destination is untouched.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Json
    )
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
        try {
            $upload.Stream.Dispose()
        } catch {
            if ($null -eq $upload.Error) { $upload.Error = 'closing {0} failed: {1}' -f $upload.Temp, $_.Exception.Message }
        }
        if ($null -ne $upload.Error) {
            throw ('{0}: upload of {1} failed: {2}' -f $name, $upload.Path, $upload.Error)
        }
        $actual = Get-FileSha256Info -Path $upload.Temp
        if ($actual.size -ne $upload.Size -or $actual.sha256 -ne $upload.Sha256) {
            throw ('{0}: upload of {1} failed verification: expected {2} bytes with SHA-256 {3}, received {4} bytes with SHA-256 {5}' -f
                $name, $upload.Path, $upload.Size, $upload.Sha256, $actual.size, $actual.sha256)
        }
        if ([System.IO.File]::Exists($upload.Path)) {
            [System.IO.File]::Replace($upload.Temp, $upload.Path, $null)
        } else {
            [System.IO.File]::Move($upload.Temp, $upload.Path)
        }
    } catch {
        Remove-UploadTemp -Temp $upload.Temp
        throw
    }
    Write-CallResult -InputObject ([ordered]@{ path = $upload.Path; size = $actual.size; sha256 = $actual.sha256 })
}

function Stop-FileUpload {
    <#
    .SYNOPSIS
    Discard the open upload, if any (deletes its temp file): -Json '{}'. Prints {}.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Json
    )
    [void](ConvertFrom-CallJson -Json $Json -Function $MyInvocation.MyCommand.Name)
    Close-OpenUpload
    $script:UploadOrphanChunks = 0
    Write-CallResult -InputObject @{}
}

function Get-FileHashInfo {
    <#
    .SYNOPSIS
    Size and SHA-256 of a file: -Json '{"path":"C:\\x\\y.bin"}'.
    .OUTPUTS
    {"exists":true,"size":N,"sha256":"<lowercase hex>"} or {"exists":false,"size":null,"sha256":null}
    (also when path is a directory).
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Json
    )
    $name = $MyInvocation.MyCommand.Name
    $call = ConvertFrom-CallJson -Json $Json -Function $name
    $path = Get-CallFilePath -Call $call -Function $name
    Write-CallResult -InputObject (Get-FileSha256Info -Path $path)
}

function Read-FileChunk {
    <#
    .SYNOPSIS
    Read a byte range of a file: -Json '{"path":...,"offset":N,"length":N}'.
    .DESCRIPTION
    Prints the base64 of the bytes [offset, offset+length) on one line, fewer at the end of the
    file, and nothing at or past the end. offset >= 0 bytes; length 0 .. 16 MiB
    ($script:MaxReadChunkBytes). Throws when the file does not exist.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Json
    )
    $name = $MyInvocation.MyCommand.Name
    $call = ConvertFrom-CallJson -Json $Json -Function $name
    $path = Get-CallFilePath -Call $call -Function $name
    $offset = Get-CallValue -Call $call -Name 'offset' -Type integer -Required -Function $name
    $length = Get-CallValue -Call $call -Name 'length' -Type integer -Required -Maximum $script:MaxReadChunkBytes -Function $name
    if (-not [System.IO.File]::Exists($path)) {
        throw ('{0}: file not found: {1}' -f $name, $path)
    }
    $stream = [System.IO.File]::Open($path, [System.IO.FileMode]::Open, [System.IO.FileAccess]::Read, [System.IO.FileShare]::ReadWrite)
    try {
        if ($offset -ge $stream.Length -or $length -eq 0) { return }
        [void]$stream.Seek($offset, [System.IO.SeekOrigin]::Begin)
        $bytes = Read-StreamBytes -Stream $stream -Count ([int][math]::Min($length, $stream.Length - $offset))
    } finally {
        $stream.Dispose()
    }
    Write-Output -InputObject ([System.Convert]::ToBase64String($bytes))
}
