# PyinfraIis module, part 94: Remove-ReleasePaths, files and release folders removed so that an
# interrupted delete never leaves a folder that looks complete, never through a junction.

# Renames and deletes are retried this many times, 2 s apart (about 2 minutes): antivirus scans
# of thousands of freshly written venv files hold them open for a while.
$script:FolderRetries = 60

function Invoke-WithRetry {
    # Run Action until it succeeds or $script:FolderRetries attempts failed (then rethrow).
    # Docs: https://learn.microsoft.com/dotnet/api/system.management.automation.scriptblock.invoke
    # Docs: https://learn.microsoft.com/powershell/module/microsoft.powershell.utility/start-sleep?view=powershell-5.1
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [scriptblock] $Action)
    for ($attempt = 1; ; $attempt++) {
        try { [void]$Action.Invoke(); return } catch {
            # Invoke() wraps the error in MethodInvocationException: report the real cause.
            if ($attempt -ge $script:FolderRetries) { throw $_.Exception.GetBaseException().Message }
            Start-Sleep -Seconds 2
        }
    }
}

function Find-ReparsePoint {
    # The first reparse point (junction, symbolic link) at or under Folder, WITHOUT following any:
    # the walk enters only folders that are not reparse points. $null when there is none.
    # Docs: https://learn.microsoft.com/dotnet/api/system.io.fileattributes?view=netframework-4.8
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [string] $Folder)
    $pending = New-Object -TypeName 'System.Collections.Generic.Stack[System.IO.DirectoryInfo]'
    $pending.Push((New-Object -TypeName 'System.IO.DirectoryInfo' -ArgumentList $Folder))
    while ($pending.Count -gt 0) {
        $current = $pending.Pop()
        if (($current.Attributes -band [System.IO.FileAttributes]::ReparsePoint) -ne 0) { return $current.FullName }
        foreach ($entry in $current.GetFileSystemInfos()) {
            if (($entry.Attributes -band [System.IO.FileAttributes]::ReparsePoint) -ne 0) { return $entry.FullName }
            if ($entry -is [System.IO.DirectoryInfo]) { $pending.Push($entry) }
        }
    }
    return $null
}

function Remove-ReleasePaths {
    # Remote primitive: {"paths": [absolute paths], "marker": ".pyinfra-iis-complete"} ->
    # {"removed": [paths]} (absent ones skipped). A folder holding a reparse point anywhere is
    # refused before anything is deleted; otherwise it loses its completion marker first, is
    # renamed to <path>.deleting, then deleted; renames and deletes are retried.
    # Docs: https://learn.microsoft.com/dotnet/api/system.io.directory.move?view=netframework-4.8
    # Docs: https://learn.microsoft.com/dotnet/api/system.io.directory.delete?view=netframework-4.8
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [AllowEmptyString()] [string] $Json)
    $function = 'Remove-ReleasePaths'
    $call = ConvertFrom-CallJson -Json $Json -Function $function
    $paths = Get-CallValue -Call $call -Name 'paths' -Type strings -Required -Function $function
    $marker = Get-CallValue -Call $call -Name 'marker' -Type string -Default $script:ReleaseCompleteMarker -Function $function
    $removed = New-Object -TypeName 'System.Collections.Generic.List[string]'
    foreach ($path in $paths) {
        if ($path -notmatch '^[A-Za-z]:\\[^%]+\\[^\\]+') { throw ('{0}: refusing "{1}": not an absolute path below a folder' -f $function, $path) }
        try {
            if ([System.IO.File]::Exists($path)) {
                Invoke-WithRetry -Action { [System.IO.File]::Delete($path) }
            } elseif ([System.IO.Directory]::Exists($path)) {
                $junction = Find-ReparsePoint -Folder $path
                if ($null -ne $junction) { throw ('{0} is or holds a reparse point ({1}); nothing was deleted' -f $path, $junction) }
                $markerPath = Join-Path -Path $path -ChildPath $marker
                if ([System.IO.File]::Exists($markerPath)) { Invoke-WithRetry -Action { [System.IO.File]::Delete($markerPath) } }
                $doomed = $path
                if (-not $path.EndsWith('.deleting')) {
                    $doomed = $path + '.deleting'
                    if ([System.IO.Directory]::Exists($doomed)) { Invoke-WithRetry -Action { [System.IO.Directory]::Delete($doomed, $true) } }
                    Invoke-WithRetry -Action { [System.IO.Directory]::Move($path, $doomed) }
                }
                Invoke-WithRetry -Action { [System.IO.Directory]::Delete($doomed, $true) }
            } else { continue }
        } catch {
            throw ('{0}: removing {1} failed: {2}' -f $function, $path, $_.Exception.Message)
        }
        [void]$removed.Add($path)
    }
    Write-CallResult -InputObject ([ordered]@{ removed = $removed.ToArray() })
}
