# PyinfraIis module, part 30: Windows features (ServerManager module, Windows Server only).
#
# Contract: docs/remote-functions.md, "Change: Windows features".
# Install-WindowsFeature returns a FeatureOperationResult: Success, ExitCode, RestartNeeded
# (Yes / No / Maybe) and FeatureResult [V: ServerManager docs, Install-WindowsFeature]
# https://learn.microsoft.com/powershell/module/servermanager/install-windowsfeature

function Install-WindowsFeatureSet {
    <#
    .SYNOPSIS
    Install the named Windows features that are not installed yet.
    .PARAMETER Json
    {"names": ["Web-Server", "Web-WebSockets", ...]}: feature names as Get-WindowsFeature lists
    them (no wildcards).
    .OUTPUTS
    One line {"installed": [names], "restart_needed": bool}: installed lists every feature this
    call installed, parents and default role services included (Install-WindowsFeature's
    FeatureResult, in its order; the simulator does the same), or the requested ones when the
    result lists none.
    restart_needed is true when Install-WindowsFeature answers RestartNeeded Yes or Maybe: a
    needed reboot is never hidden.
    Throws naming every unknown feature before installing anything, and with the exit code when
    Install-WindowsFeature does not succeed.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [AllowEmptyString()]
        [string] $Json
    )
    $function = 'Install-WindowsFeatureSet'
    $call = ConvertFrom-CallJson -Json $Json -Function $function
    $names = Get-CallValue -Call $call -Name 'names' -Type strings -Required -Function $function
    foreach ($name in $names) {
        # Get-WindowsFeature -Name takes wildcards; a name must stand for exactly one feature.
        if ($name -notmatch '^[A-Za-z0-9][A-Za-z0-9_.-]*$') {
            throw ('{0}: "{1}" is not a Windows feature name' -f $function, $name)
        }
    }
    if ($names.Count -eq 0) {
        Write-CallResult -InputObject ([ordered]@{ installed = @(); restart_needed = $false })
        return
    }

    $known = @{}
    foreach ($feature in (Get-WindowsFeature -Name $names)) {
        $known[[string]$feature.Name] = [bool]$feature.Installed
    }
    $unknown = New-Object -TypeName 'System.Collections.Generic.List[string]'
    $missing = New-Object -TypeName 'System.Collections.Generic.List[string]'
    foreach ($name in $names) {
        if (-not $known.ContainsKey($name)) {
            $unknown.Add($name)
        } elseif (-not $known[$name] -and -not $missing.Contains($name)) {
            $missing.Add($name)
        }
    }
    if ($unknown.Count -gt 0) {
        throw ('{0}: unknown Windows feature(s): {1} (not listed by Get-WindowsFeature on this host)' -f $function, [string]::Join(', ', $unknown.ToArray()))
    }
    if ($missing.Count -eq 0) {
        Write-CallResult -InputObject ([ordered]@{ installed = @(); restart_needed = $false })
        return
    }

    $toInstall = $missing.ToArray()
    try {
        $result = Install-WindowsFeature -Name $toInstall
    } catch {
        throw ('{0}: Install-WindowsFeature {1} failed: {2}' -f $function, [string]::Join(', ', $toInstall), $_.Exception.Message)
    }
    if (-not $result.Success) {
        throw ('{0}: Install-WindowsFeature {1} did not succeed (exit code {2})' -f $function, [string]::Join(', ', $toInstall), [string]$result.ExitCode)
    }
    $restart = [string]$result.RestartNeeded
    $installed = New-Object -TypeName 'System.Collections.Generic.List[string]'
    foreach ($featureResult in @($result.FeatureResult)) {
        if ($null -ne $featureResult -and -not $installed.Contains([string]$featureResult.Name)) {
            $installed.Add([string]$featureResult.Name)
        }
    }
    if ($installed.Count -eq 0) { $installed.AddRange([string[]]$toInstall) }
    Write-CallResult -InputObject ([ordered]@{
            installed = $installed.ToArray()
            restart_needed = ($restart -eq 'Yes') -or ($restart -eq 'Maybe')
        })
}
