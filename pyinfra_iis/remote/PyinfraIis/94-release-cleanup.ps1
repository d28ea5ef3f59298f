# PyinfraIis module, part 94: Remove-OldReleases, the newest complete releases kept and the others
# deleted with their artifacts and stale .partial builds (layout: part 90).
#
# Contract: docs/remote-functions.md, "Releases".

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
        $manifest = Read-JsonFile -Path (Join-Path -Path $Release -ChildPath 'manifest.json') -Label 'manifest.json'
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
