# PyinfraIis module, part 70: certificates (docs/remote-functions.md, "Change: certificates",
# "certificates" of Get-HostState). Reported raw (DER, key file, its SDDL), parsed by the controller
# (facts/certificate_state.py). A PFX arrives as bytes inside the call, never as a file on disk.

function Open-MachineCertificateStore {
    # Open an existing LocalMachine store (never creates one): the X509Store (close it), or $null.
    # Docs: https://learn.microsoft.com/dotnet/api/system.security.cryptography.x509certificates.x509store.open
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [AllowEmptyString()] [string] $Store, [switch] $Write, [string] $Function = 'remote call')
    if ($Store -notmatch '^[A-Za-z][A-Za-z0-9]*$') { throw ('{0}: "{1}" is not a certificate store name (My, WebHosting, ...)' -f $Function, $Store) }
    $flags = [System.Security.Cryptography.X509Certificates.OpenFlags]::OpenExistingOnly
    if ($Write) { $flags = $flags -bor [System.Security.Cryptography.X509Certificates.OpenFlags]::ReadWrite }
    $handle = New-Object -TypeName 'System.Security.Cryptography.X509Certificates.X509Store' -ArgumentList @($Store, [System.Security.Cryptography.X509Certificates.StoreLocation]::LocalMachine)
    try { $handle.Open($flags) } catch { $handle.Close(); return $null }
    return , $handle
}

function Get-CertificateKeyPath {
    # The file holding a certificate's private key: CNG keys (RSACng/ECDsaCng, CngKey.UniqueName) under
    # %ProgramData%\Microsoft\Crypto\Keys, CAPI keys (CspKeyContainerInfo.UniqueKeyContainerName) under
    # ...\Crypto\RSA\MachineKeys; $null when there is no key or no such file.
    # Docs: https://learn.microsoft.com/dotnet/api/system.security.cryptography.x509certificates.rsacertificateextensions.getrsaprivatekey
    # Docs: https://learn.microsoft.com/dotnet/api/system.security.cryptography.cngkey.uniquename
    # Docs: https://learn.microsoft.com/dotnet/api/system.security.cryptography.cspkeycontainerinfo.uniquekeycontainername
    # Docs: https://learn.microsoft.com/windows/win32/seccng/key-storage-and-retrieval (key file folders)
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [System.Security.Cryptography.X509Certificates.X509Certificate2] $Certificate)
    if (-not $Certificate.HasPrivateKey) { return $null }
    $crypto = [System.IO.Path]::Combine([string]$env:ProgramData, 'Microsoft', 'Crypto')
    try {
        $key = [System.Security.Cryptography.X509Certificates.RSACertificateExtensions]::GetRSAPrivateKey($Certificate)
        if ($null -eq $key) { $key = [System.Security.Cryptography.X509Certificates.ECDsaCertificateExtensions]::GetECDsaPrivateKey($Certificate) }
    } catch { return $null }
    if ($null -eq $key) { return $null }
    try {
        if ($key -is [System.Security.Cryptography.RSACryptoServiceProvider]) {
            $candidates = @([System.IO.Path]::Combine($crypto, 'RSA\MachineKeys', $key.CspKeyContainerInfo.UniqueKeyContainerName))
        } elseif ($null -ne $key.PSObject.Properties['Key'] -and $key.Key -is [System.Security.Cryptography.CngKey]) {
            $candidates = @([System.IO.Path]::Combine($crypto, 'Keys', $key.Key.UniqueName), [System.IO.Path]::Combine($crypto, 'RSA\MachineKeys', $key.Key.UniqueName))
        } else { $candidates = @() }
    } finally { $key.Dispose() }
    foreach ($candidate in $candidates) { if ([System.IO.File]::Exists($candidate)) { return $candidate } }
    return $null
}

function Get-CertificateState {
    # The "certificates" part of Get-HostState: for each certificate of the given LocalMachine stores
    # (a store that does not exist contributes nothing) {store, der (base64 of RawData),
    # has_private_key, key_path, key_sddl, key_sids} (key_* from Get-PathAclReport of the key file).
    # Docs: https://learn.microsoft.com/dotnet/api/system.security.cryptography.x509certificates.x509certificate2.rawdata
    [CmdletBinding()]
    param([AllowEmptyCollection()] [string[]] $Stores = @(), [string] $Function = 'remote call')
    $certificates = [System.Collections.ArrayList]::new()
    foreach ($storeName in $Stores) {
        $store = Open-MachineCertificateStore -Store $storeName -Function $Function
        if ($null -eq $store) { continue }
        try {
            foreach ($certificate in $store.Certificates) {
                $entry = [ordered]@{ store = $storeName; der = [System.Convert]::ToBase64String($certificate.RawData)
                    has_private_key = [bool]$certificate.HasPrivateKey; key_path = $null; key_sddl = $null; key_sids = [ordered]@{} }
                $entry.key_path = Get-CertificateKeyPath -Certificate $certificate
                if ($null -ne $entry.key_path) {
                    # An unreadable key file of another product must not fail the whole fact.
                    try {
                        $report = Get-PathAclReport -Path $entry.key_path -Function $Function
                        $entry.key_sddl = $report.sddl
                        $entry.key_sids = $report.sids
                    } catch { $entry['key_error'] = $_.Exception.Message }
                }
                [void]$certificates.Add($entry)
            }
        } finally { $store.Close() }
    }
    return , $certificates
}

function Import-PfxCollection {
    # Read PFX bytes into an X509Certificate2Collection; a failure says "the password is wrong or the
    # data is not a PFX" with .NET's reason, never the password or the bytes.
    # Docs: https://learn.microsoft.com/dotnet/api/system.security.cryptography.x509certificates.x509certificate2collection.import#system-security-cryptography-x509certificates-x509certificate2collection-import(system-byte()-system-string-system-security-cryptography-x509certificates-x509keystorageflags)
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)] [byte[]] $Data,
        [Parameter(Mandatory = $true)] [AllowEmptyString()] [string] $Password,
        [Parameter(Mandatory = $true)] [System.Security.Cryptography.X509Certificates.X509KeyStorageFlags] $Flags,
        [string] $Function = 'remote call'
    )
    $collection = New-Object -TypeName 'System.Security.Cryptography.X509Certificates.X509Certificate2Collection'
    try { $collection.Import($Data, $Password, $Flags) } catch {
        $inner = $_.Exception
        while ($null -ne $inner.InnerException) { $inner = $inner.InnerException }
        $reason = $inner.Message
        if ($Password.Length -gt 0 -and $reason.Contains($Password)) { $reason = 'the PFX could not be read' }
        throw ('{0}: cannot import the PFX: the password is wrong or the data is not a PKCS#12 (PFX) file ({1})' -f $Function, $reason)
    }
    return , $collection
}

function Import-IisCertificate {
    # {"pfx": base64 (secret), "password": secret, "store", "exportable"?, "thumbprint": the leaf's} ->
    # {thumbprint, subject, store, imported, chain}: the leaf (with the private key; key persisted only when
    # new) into LocalMachine\<store>, the other certificates into LocalMachine\CA (never Root), each only
    # when missing. Leftover PFX files of the old upload folder are deleted.
    # Docs: https://learn.microsoft.com/dotnet/api/system.security.cryptography.x509certificates.x509keystorageflags
    # Docs: https://learn.microsoft.com/dotnet/api/system.security.cryptography.x509certificates.x509store.add
    # Docs: https://learn.microsoft.com/dotnet/api/system.security.cryptography.x509certificates.x509certificate2collection.find
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [AllowEmptyString()] [string] $Json)
    $function = 'Import-IisCertificate'
    $call = ConvertFrom-CallJson -Json $Json -Function $function
    $storeName = Get-CallValue -Call $call -Name 'store' -Type string -Default 'My' -Function $function
    $expected = Get-CallValue -Call $call -Name 'thumbprint' -Type string -Required -Function $function
    if ($expected -notmatch '^[0-9A-Fa-f]{40}$') { throw ('{0}: "thumbprint" must be 40 hex digits' -f $function) }
    $legacy = [System.IO.Path]::Combine([string]$env:ProgramData, 'pyinfra-iis', 'certs')
    $data = $null
    $collection = $null
    $byThumbprint = [System.Security.Cryptography.X509Certificates.X509FindType]::FindByThumbprint
    try {
        $text = Get-CallValue -Call $call -Name 'pfx' -Type string -Required -Function $function
        if ($text.Length -gt 409600) { throw ('{0}: the PFX is larger than 300 KB; a server certificate''s PFX is a few KB' -f $function) }
        try { $data = [System.Convert]::FromBase64String($text) } catch { throw ('{0}: "pfx" is not base64' -f $function) }
        $store = Open-MachineCertificateStore -Store $storeName -Write -Function $function
        $chainStore = Open-MachineCertificateStore -Store 'CA' -Write -Function $function
        if ($null -eq $store -or $null -eq $chainStore) {
            foreach ($handle in @($store, $chainStore)) { if ($null -ne $handle) { $handle.Close() } }
            throw ('{0}: certificate store LocalMachine\{1} or LocalMachine\CA does not exist' -f $function, $storeName)
        }
        try {
            # A copy without its private key (a .cer import, a deleted key file) is not "known": it is imported again.
            $known = @($store.Certificates.Find($byThumbprint, $expected, $false) | Where-Object -FilterScript { $_.HasPrivateKey }).Count -gt 0
            $flags = [System.Security.Cryptography.X509Certificates.X509KeyStorageFlags]::MachineKeySet
            if (-not $known) { $flags = $flags -bor [System.Security.Cryptography.X509Certificates.X509KeyStorageFlags]::PersistKeySet }
            if (-not $known -and (Get-CallValue -Call $call -Name 'exportable' -Type boolean -Default $false -Function $function)) {
                $flags = $flags -bor [System.Security.Cryptography.X509Certificates.X509KeyStorageFlags]::Exportable
            }
            $password = Get-CallValue -Call $call -Name 'password' -Type string -Default '' -Function $function
            $collection = Import-PfxCollection -Data $data -Password $password -Flags $flags -Function $function
            $leaf = @($collection | Where-Object -FilterScript { $_.HasPrivateKey }) | Select-Object -First 1
            if ($null -eq $leaf) { throw ('{0}: the PFX holds no certificate with a private key' -f $function) }
            if ($leaf.Thumbprint -ne $expected) { throw ('{0}: the PFX holds {1}, not {2}' -f $function, $leaf.Thumbprint, $expected) }
            if (-not $known) { [void]$store.Add($leaf) }
            $chain = [System.Collections.ArrayList]::new()
            foreach ($other in $collection) {
                if ($other.Thumbprint -eq $leaf.Thumbprint -or $chainStore.Certificates.Find($byThumbprint, $other.Thumbprint, $false).Count -gt 0) { continue }
                [void]$chainStore.Add($other)
                [void]$chain.Add($other.Thumbprint.ToUpperInvariant())
            }
            $result = [ordered]@{ thumbprint = $leaf.Thumbprint.ToUpperInvariant(); subject = [string]$leaf.Subject
                store = $storeName; imported = (-not $known); chain = $chain.ToArray() }
        } finally { $store.Close(); $chainStore.Close() }
    } finally {
        if ($null -ne $data) { [System.Array]::Clear($data, 0, $data.Length) }
        # A key imported without PersistKeySet (leaf already present) is removed with its object.
        if ($null -ne $collection) { foreach ($certificate in $collection) { $certificate.Reset() } }
        if ([System.IO.Directory]::Exists($legacy)) {
            foreach ($path in [System.IO.Directory]::GetFiles($legacy, '*.pfx')) { [System.IO.File]::Delete($path) }
        }
    }
    Write-CallResult -InputObject $result
}

function Test-SharedCertificateKey {
    # Whether a certificate in LocalMachine\My, WebHosting or Store has a private key and PublicKey: it uses the same
    # key (a renewal that kept it, a copy MMC made in another store), which must then stay.
    # Docs: https://learn.microsoft.com/dotnet/api/system.security.cryptography.x509certificates.x509certificate.getpublickeystring
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [string] $PublicKey, [Parameter(Mandatory = $true)] [string] $Store)
    foreach ($name in @(@('My', 'WebHosting', $Store) | Select-Object -Unique)) {
        $other = Open-MachineCertificateStore -Store $name
        if ($null -ne $other) { try { foreach ($certificate in $other.Certificates) { if ($certificate.HasPrivateKey -and $certificate.GetPublicKeyString() -ceq $PublicKey) { return $true } } } finally { $other.Close() } }
    }
    return $false
}

function Remove-IisCertificate {
    # {"thumbprint", "store"?} -> {"removed": bool}: remove the certificate from LocalMachine\<store>, then its key unless shared
    # (Test-SharedCertificateKey): CAPI (.PrivateKey, which throws for CNG; GetRSAPrivateKey wraps software CAPI keys in RSACng
    # too): PersistKeyInCsp false, then Clear; CNG: CngKey.Delete. Chain certificates stay.
    # Docs: https://learn.microsoft.com/dotnet/api/system.security.cryptography.x509certificates.x509store.remove
    # Docs: https://learn.microsoft.com/dotnet/api/system.security.cryptography.x509certificates.x509certificate2.privatekey
    # Docs: https://learn.microsoft.com/dotnet/api/system.security.cryptography.cngkey.delete
    # Docs: https://learn.microsoft.com/dotnet/api/system.security.cryptography.rsacryptoserviceprovider.persistkeyincsp
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [AllowEmptyString()] [string] $Json)
    $function = 'Remove-IisCertificate'
    $call = ConvertFrom-CallJson -Json $Json -Function $function
    $storeName = Get-CallValue -Call $call -Name 'store' -Type string -Default 'My' -Function $function
    $thumbprint = Get-CallValue -Call $call -Name 'thumbprint' -Type string -Required -Function $function
    if ($thumbprint -notmatch '^[0-9A-Fa-f]{40}$') { throw ('{0}: "thumbprint" must be 40 hex digits' -f $function) }
    $store = Open-MachineCertificateStore -Store $storeName -Write -Function $function
    if ($null -eq $store) { Write-CallResult -InputObject ([ordered]@{ removed = $false }); return }
    try {
        $found = @($store.Certificates.Find([System.Security.Cryptography.X509Certificates.X509FindType]::FindByThumbprint, $thumbprint, $false))
        foreach ($certificate in $found) {
            $key = $null; if ($certificate.HasPrivateKey) { try { $key = $certificate.PrivateKey } catch { $key = $null }
                try { if ($key -isnot [System.Security.Cryptography.RSACryptoServiceProvider]) { $key = [System.Security.Cryptography.X509Certificates.RSACertificateExtensions]::GetRSAPrivateKey($certificate) }
                    if ($null -eq $key) { $key = [System.Security.Cryptography.X509Certificates.ECDsaCertificateExtensions]::GetECDsaPrivateKey($certificate) } } catch { $key = $null } }  # key gone: the certificate still goes
            [void]$store.Remove($certificate)
            if ($null -eq $key -or (Test-SharedCertificateKey -PublicKey $certificate.GetPublicKeyString() -Store $storeName)) { if ($null -ne $key) { $key.Dispose() }; continue }
            if ($key -is [System.Security.Cryptography.RSACryptoServiceProvider]) { $key.PersistKeyInCsp = $false; $key.Clear() }
            elseif ($null -ne $key.PSObject.Properties['Key']) { $key.Key.Delete(); $key.Dispose() }
        }
    } catch { throw ('{0}: cannot remove {1} from LocalMachine\{2}: {3}' -f $function, $thumbprint, $storeName, $_.Exception.Message) } finally { $store.Close() }
    Write-CallResult -InputObject ([ordered]@{ removed = ($found.Count -gt 0) })
}
