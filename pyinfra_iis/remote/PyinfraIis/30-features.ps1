# PyinfraIis module, part 30: Windows features (docs/remote-functions.md, "Change: Windows features").
# Docs: https://learn.microsoft.com/powershell/module/servermanager/install-windowsfeature
#       https://learn.microsoft.com/powershell/module/servermanager/get-windowsfeature

function Install-WindowsFeatureSet {
    # -Json {"names": [...]} -> {"installed": [names Install-WindowsFeature installed, parents
    # included], "restart_needed": bool (RestartNeeded Yes or Maybe)}. Unknown names -> error
    # naming them, before anything is installed.
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [AllowEmptyString()] [string] $Json)
    $function = 'Install-WindowsFeatureSet'
    $call = ConvertFrom-CallJson -Json $Json -Function $function
    $names = Get-CallValue -Call $call -Name 'names' -Type strings -Required -Function $function
    foreach ($name in $names) {
        # Get-WindowsFeature -Name takes wildcards: a name must stand for exactly one feature.
        if ($name -notmatch '^[A-Za-z0-9][A-Za-z0-9_.-]*$') { throw ('{0}: "{1}" is not a Windows feature name' -f $function, $name) }
    }
    $known = @{}
    if ($names.Count -gt 0) {
        foreach ($feature in (Get-WindowsFeature -Name $names)) { $known[[string]$feature.Name] = [bool]$feature.Installed }
    }
    $unknown = @($names | Where-Object -FilterScript { -not $known.ContainsKey($_) })
    if ($unknown.Count -gt 0) {
        throw ('{0}: unknown Windows feature(s): {1}' -f $function, [string]::Join(', ', [string[]]$unknown))
    }
    $missing = [string[]]@($names | Where-Object -FilterScript { -not $known[$_] } | Select-Object -Unique)
    if ($missing.Count -eq 0) {
        Write-CallResult -InputObject ([ordered]@{ installed = @(); restart_needed = $false })
        return
    }
    try {
        $result = Install-WindowsFeature -Name $missing
    } catch {
        throw ('{0}: Install-WindowsFeature {1} failed: {2}' -f $function, [string]::Join(', ', $missing), $_.Exception.Message)
    }
    if (-not $result.Success) {
        throw ('{0}: Install-WindowsFeature {1} did not succeed (exit code {2})' -f $function, [string]::Join(', ', $missing), [string]$result.ExitCode)
    }
    $installed = [string[]]@(@($result.FeatureResult) | Where-Object -FilterScript { $null -ne $_ } | ForEach-Object -Process { [string]$_.Name } | Select-Object -Unique)
    if ($installed.Count -eq 0) { $installed = $missing }
    $restart = [string]$result.RestartNeeded
    Write-CallResult -InputObject ([ordered]@{ installed = $installed; restart_needed = ($restart -eq 'Yes') -or ($restart -eq 'Maybe') })
}
