# PyinfraIis module, part 50: Microsoft.Web.Administration (MWA) for parts 51, 52 and 60.
# Docs: https://learn.microsoft.com/dotnet/api/microsoft.web.administration.servermanager
#       ("Updates made to configuration objects must be explicitly written ... by using the
#       CommitChanges method"; Sites, ApplicationPools)

function Get-InetsrvPath {
    [CmdletBinding()]
    param()
    return [System.IO.Path]::Combine([System.Environment]::SystemDirectory, 'inetsrv')
}

function Get-ApplicationHostConfigPath {
    [CmdletBinding()]
    param()
    return [System.IO.Path]::Combine((Get-InetsrvPath), 'config', 'applicationHost.config')
}

function Test-IisInstalled {
    # Microsoft.Web.Administration.dll comes with the Web-Server feature.
    [CmdletBinding()]
    param()
    return [System.IO.File]::Exists((Join-Path -Path (Get-InetsrvPath) -ChildPath 'Microsoft.Web.Administration.dll'))
}

function New-IisServerManager {
    # A new ServerManager (dispose it in a finally block); the assembly is loaded once.
    [CmdletBinding()]
    param([string] $Function = 'remote call')
    $assembly = Join-Path -Path (Get-InetsrvPath) -ChildPath 'Microsoft.Web.Administration.dll'
    if (-not [System.IO.File]::Exists($assembly)) {
        throw ('{0}: IIS is not installed ({1} is missing): install the Web-Server feature first' -f $Function, $assembly)
    }
    if ($null -eq ('Microsoft.Web.Administration.ServerManager' -as [type])) { Add-Type -Path $assembly }
    return New-Object -TypeName 'Microsoft.Web.Administration.ServerManager'
}

function Get-IisNamedObject {
    # The site or application pool called Name (case-insensitive, as IIS), or an error naming it.
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)] [object] $Manager,
        [Parameter(Mandatory = $true)] [ValidateSet('site', 'app pool')] [string] $Kind,
        [Parameter(Mandatory = $true)] [string] $Name,
        [string] $Function = 'remote call'
    )
    $object = $null
    if ($Kind -eq 'site') { $object = $Manager.Sites[$Name] } else { $object = $Manager.ApplicationPools[$Name] }
    if ($null -eq $object) { throw ('{0}: {1} "{2}" does not exist' -f $Function, $Kind, $Name) }
    return , $object
}
