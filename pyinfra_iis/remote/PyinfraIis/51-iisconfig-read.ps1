# PyinfraIis module, part 51: the raw "iis" part of Get-HostState. The controller parses it
# (pyinfra_iis/facts/iis_state.py): no walk over MWA attributes or child elements here.
# Docs: https://learn.microsoft.com/dotnet/api/system.xml.xmlnode.selectnodes (XPath)
#       https://learn.microsoft.com/dotnet/api/microsoft.web.administration.applicationpoolprocessmodel.password
#       https://learn.microsoft.com/windows/win32/http/show-sslcert (netsh http show sslcert)
#       https://learn.microsoft.com/iis/wmi-provider/configurationredirectionsection-class (redirection.config)

function Get-DecryptedPoolPassword {
    # The clear value of an encrypted ([enc:AesProvider:...:enc]) processModel password, through
    # the typed API, which decrypts it; other encrypted values are digested as written.
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [object] $Manager, [Parameter(Mandatory = $true)] [System.Xml.XmlAttribute] $Attribute)
    $owner = $Attribute.get_OwnerElement()
    if ($owner.get_LocalName() -ne 'processModel') { return $Attribute.get_Value() }
    $parent = $owner.get_ParentNode()
    if ($parent.get_LocalName() -eq 'applicationPoolDefaults') { return [string]$Manager.ApplicationPoolDefaults.ProcessModel.Password }
    $pool = $Manager.ApplicationPools[$parent.GetAttribute('name')]
    if ($parent.get_LocalName() -ne 'add' -or $null -eq $pool) { return $Attribute.get_Value() }
    return [string]$pool.ProcessModel.Password
}

function Get-ProtectedConfigText {
    # A config file's text, every password and environmentVariables value as ConvertTo-SecretDigest; a pool
    # password that cannot be decrypted (keys of another server) is digested as written, so it is set again.
    [CmdletBinding()]
    param([AllowNull()] [object] $Manager, [Parameter(Mandatory = $true)] [byte[]] $DigestKey, [string] $Path = (Get-ApplicationHostConfigPath), [string] $Function = 'remote call')
    $document = New-Object -TypeName 'System.Xml.XmlDocument'
    $document.PreserveWhitespace = $true
    try { $document.Load($Path) } catch { throw ('{0}: cannot read {1}: {2}' -f $Function, $Path, $_.Exception.Message) }
    foreach ($attribute in @($document.SelectNodes('//@password | //environmentVariables/*/@value'))) {
        $value = $attribute.get_Value()
        if ($null -ne $Manager -and $value.StartsWith('[enc:', [System.StringComparison]::Ordinal)) {
            try { $value = Get-DecryptedPoolPassword -Manager $Manager -Attribute $attribute } catch { $value = $attribute.get_Value() }
        }
        $attribute.set_Value((ConvertTo-SecretDigest -Value $value -Key $DigestKey))
    }
    return $document.get_OuterXml()
}

function Get-IisHostState {
    # {"config": protected applicationHost.config text, "redirection": redirection.config text or
    # null, "runtime": {"app_pools", "sites"}, "sslcert": output of netsh http show sslcert}.
    # HTTP.sys's SSL bindings come from netsh (a documented, built-in program that lists ipport,
    # hostnameport and ccs bindings alike, without loading the WebAdministration module); the
    # controller parses it by field order, so a translated netsh parses too.
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [byte[]] $DigestKey, [string] $Function = 'remote call')
    $manager = New-IisServerManager -Function $Function
    try {
        $config = Get-ProtectedConfigText -Manager $manager -DigestKey $DigestKey -Function $Function
        $runtime = Get-IisRuntimeState -Manager $manager
    } finally {
        $manager.Dispose()
    }
    $redirectionPath = [System.IO.Path]::Combine((Get-InetsrvPath), 'config', 'redirection.config')
    $redirection = $null
    if ([System.IO.File]::Exists($redirectionPath)) { $redirection = Get-ProtectedConfigText -Manager $null -DigestKey $DigestKey -Path $redirectionPath -Function $Function }
    $netsh = [System.IO.Path]::Combine([System.Environment]::SystemDirectory, 'netsh.exe')
    $run = Invoke-HostProgram -FilePath $netsh -Arguments @('http', 'show', 'sslcert') -TimeoutSeconds 60 -Step 'netsh http show sslcert' -Function $Function
    if ($run['exit_code'] -ne 0) {
        throw ('{0}: netsh http show sslcert exited with {1}: {2}' -f $Function, $run['exit_code'], $run['stderr'])
    }
    return [ordered]@{ config = $config; redirection = $redirection; runtime = $runtime; sslcert = [string]$run['stdout'] }
}
