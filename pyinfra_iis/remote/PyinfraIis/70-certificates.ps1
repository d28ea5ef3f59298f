# PyinfraIis module, part 70: certificates in Cert:\LocalMachine\<store> and their private keys.
#
# Contract: docs/remote-functions.md, "Change: certificates" and the "certificates" part of
# Get-HostState. .NET APIs used [V]:
# - X509Certificate2Collection.Import(path, password, X509KeyStorageFlags); MachineKeySet puts the
#   key in the machine key store, PersistKeySet keeps it after the object is gone, Exportable marks
#   it exportable. Without PersistKeySet the imported key is deleted again when the object is reset.
#   https://learn.microsoft.com/dotnet/api/system.security.cryptography.x509certificates.x509keystorageflags
# - X509Store(name, StoreLocation.LocalMachine), OpenFlags.ReadWrite / ReadOnly / OpenExistingOnly.
# - RSACertificateExtensions.GetRSAPrivateKey / ECDsaCertificateExtensions.GetECDsaPrivateKey return
#   RSACng / ECDsaCng for CNG keys (CngKey.UniqueName is the key file under
#   %ProgramData%\Microsoft\Crypto\Keys) and RSACryptoServiceProvider for CAPI keys
#   (CspKeyContainerInfo.UniqueKeyContainerName is the file under
#   %ProgramData%\Microsoft\Crypto\RSA\MachineKeys) [V docs, file locations R].
# - Subject alternative names: extension 2.5.29.17, GeneralNames (RFC 5280 4.2.1.6); a dNSName is
#   the context-specific primitive tag [2] = 0x82. .NET Framework has no API for the list and
#   X509Extension.Format() is localized, so the DER is read here.

function Read-DerLength {
    <#
    .SYNOPSIS
    Read a DER length at Offset of Data.
    .OUTPUTS
    [int[]] @(length, offset of the content). Throws on a length form DER does not allow here.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [byte[]] $Data,
        [Parameter(Mandatory = $true)]
        [int] $Offset
    )
    if ($Offset -ge $Data.Length) { throw 'truncated DER length' }
    $first = [int]$Data[$Offset]
    if ($first -lt 0x80) { return , @($first, ($Offset + 1)) }
    $count = $first -band 0x7F
    if ($count -lt 1 -or $count -gt 3 -or ($Offset + $count) -ge $Data.Length) { throw 'unsupported DER length' }
    $length = 0
    for ($index = 1; $index -le $count; $index++) {
        $length = ($length * 256) + [int]$Data[$Offset + $index]
    }
    return , @($length, ($Offset + 1 + $count))
}

function Get-CertificateDnsNames {
    <#
    .SYNOPSIS
    Return the DNS names of a certificate's subject alternative name extension, in order.
    .OUTPUTS
    [string[]], empty when there is no such extension or it cannot be read.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [System.Security.Cryptography.X509Certificates.X509Certificate2] $Certificate
    )
    $names = New-Object -TypeName 'System.Collections.Generic.List[string]'
    $extension = $null
    foreach ($candidate in $Certificate.Extensions) {
        if ($candidate.Oid.Value -eq '2.5.29.17') { $extension = $candidate }
    }
    if ($null -eq $extension) { return , $names.ToArray() }
    $data = [byte[]]$extension.RawData
    try {
        if ($data.Length -lt 2 -or $data[0] -ne 0x30) { return , $names.ToArray() }
        $header = Read-DerLength -Data $data -Offset 1
        $offset = $header[1]
        $end = [System.Math]::Min($data.Length, $offset + $header[0])
        while ($offset -lt $end) {
            $tag = [int]$data[$offset]
            $element = Read-DerLength -Data $data -Offset ($offset + 1)
            $contentStart = $element[1]
            if ($contentStart + $element[0] -gt $data.Length) { break }
            if ($tag -eq 0x82) {
                $names.Add([System.Text.Encoding]::ASCII.GetString($data, $contentStart, $element[0]))
            }
            $offset = $contentStart + $element[0]
        }
    } catch {
        # A malformed extension is reported as no DNS names; the certificate itself is still listed.
        $names.Clear()
    }
    return , $names.ToArray()
}

function Get-CertificateKeyPath {
    <#
    .SYNOPSIS
    Return the path of the file holding a certificate's private key in the machine key store.
    .OUTPUTS
    [string], or $null when the certificate has no private key, the key cannot be opened, or its
    file is not where CNG / CAPI machine keys live.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [System.Security.Cryptography.X509Certificates.X509Certificate2] $Certificate
    )
    if (-not $Certificate.HasPrivateKey) { return $null }
    $cryptoFolder = [System.IO.Path]::Combine([string]$env:ProgramData, 'Microsoft', 'Crypto')
    $key = $null
    try {
        $key = [System.Security.Cryptography.X509Certificates.RSACertificateExtensions]::GetRSAPrivateKey($Certificate)
        if ($null -eq $key) {
            $key = [System.Security.Cryptography.X509Certificates.ECDsaCertificateExtensions]::GetECDsaPrivateKey($Certificate)
        }
    } catch {
        return $null
    }
    if ($null -eq $key) { return $null }
    try {
        if ($key -is [System.Security.Cryptography.RSACryptoServiceProvider]) {
            $candidates = @([System.IO.Path]::Combine($cryptoFolder, 'RSA', 'MachineKeys', $key.CspKeyContainerInfo.UniqueKeyContainerName))
        } elseif ($null -ne $key.PSObject.Properties['Key'] -and $key.Key -is [System.Security.Cryptography.CngKey]) {
            $unique = $key.Key.UniqueName
            # CNG stores RSA and ECDSA machine keys under Crypto\Keys; keys of the legacy RSA
            # providers opened through CNG stay in Crypto\RSA\MachineKeys [R].
            $candidates = @(
                [System.IO.Path]::Combine($cryptoFolder, 'Keys', $unique),
                [System.IO.Path]::Combine($cryptoFolder, 'RSA', 'MachineKeys', $unique)
            )
        } else {
            return $null
        }
    } finally {
        $key.Dispose()
    }
    foreach ($candidate in $candidates) {
        if ([System.IO.File]::Exists($candidate)) { return $candidate }
    }
    return $null
}

function Get-CertificateKeyReaders {
    <#
    .SYNOPSIS
    Return the principals with an Allow entry including Read (ReadData) on a certificate's private
    key file, as Windows names them ("IIS APPPOOL\api", "NT AUTHORITY\SYSTEM", ...), sorted.
    .OUTPUTS
    [string[]], empty when there is no private key file.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [System.Security.Cryptography.X509Certificates.X509Certificate2] $Certificate
    )
    $readers = New-Object -TypeName 'System.Collections.Generic.List[string]'
    $path = Get-CertificateKeyPath -Certificate $Certificate
    if ($null -eq $path) { return , $readers.ToArray() }
    $readData = [int][System.Security.AccessControl.FileSystemRights]::ReadData
    foreach ($rule in (Get-PathSecurity -Path $path).GetAccessRules($true, $true, [System.Security.Principal.SecurityIdentifier])) {
        if ($rule.AccessControlType -ne [System.Security.AccessControl.AccessControlType]::Allow) { continue }
        if (([int]$rule.FileSystemRights -band $readData) -eq 0) { continue }
        $name = Get-PrincipalName -Identity $rule.IdentityReference
        if (-not $readers.Contains($name)) { $readers.Add($name) }
    }
    $sorted = $readers.ToArray()
    [System.Array]::Sort($sorted, [System.StringComparer]::Ordinal)
    return , $sorted
}

function Format-UtcTimestamp {
    <#
    .SYNOPSIS
    Return a DateTime as "yyyy-MM-ddTHH:mm:ssZ" in UTC.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [datetime] $Value
    )
    return $Value.ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", [System.Globalization.CultureInfo]::InvariantCulture)
}

function Assert-CertificateStoreName {
    <#
    .SYNOPSIS
    Check that a store name is a plain name (My, WebHosting, CA, ...).
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [AllowEmptyString()]
        [string] $Store,
        [string] $Function = 'remote call'
    )
    if ($Store -notmatch '^[A-Za-z][A-Za-z0-9]*$') {
        throw ('{0}: "{1}" is not a certificate store name (My, WebHosting, ...)' -f $Function, $Store)
    }
}

function Open-MachineCertificateStore {
    <#
    .SYNOPSIS
    Open an existing store of the local machine (never creates one).
    .PARAMETER Write
    Open it read-write (default read-only).
    .OUTPUTS
    System.Security.Cryptography.X509Certificates.X509Store (close it), or $null when the store
    does not exist.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Store,
        [switch] $Write
    )
    $flags = [System.Security.Cryptography.X509Certificates.OpenFlags]::OpenExistingOnly
    if ($Write) {
        $flags = $flags -bor [System.Security.Cryptography.X509Certificates.OpenFlags]::ReadWrite
    }
    $handle = New-Object -TypeName 'System.Security.Cryptography.X509Certificates.X509Store' -ArgumentList @($Store, [System.Security.Cryptography.X509Certificates.StoreLocation]::LocalMachine)
    try {
        $handle.Open($flags)
    } catch {
        $handle.Close()
        return $null
    }
    return , $handle
}

function Get-CertificateState {
    <#
    .SYNOPSIS
    Return the certificates of the given LocalMachine stores for Get-HostState.
    .PARAMETER Stores
    Store names ("My", "WebHosting"); a store that does not exist contributes nothing.
    .OUTPUTS
    ArrayList of {store, thumbprint (40 upper hex), subject, dns_names, not_before, not_after
    (UTC, "2026-01-01T00:00:00Z"), has_private_key, key_readers}.
    #>
    [CmdletBinding()]
    param(
        [AllowEmptyCollection()]
        [string[]] $Stores = @(),
        [string] $Function = 'remote call'
    )
    $certificates = [System.Collections.ArrayList]::new()
    foreach ($storeName in $Stores) {
        Assert-CertificateStoreName -Store $storeName -Function $Function
        $store = Open-MachineCertificateStore -Store $storeName
        if ($null -eq $store) { continue }
        try {
            foreach ($certificate in $store.Certificates) {
                [void]$certificates.Add([ordered]@{
                        store = $storeName
                        thumbprint = $certificate.Thumbprint.ToUpperInvariant()
                        subject = [string]$certificate.Subject
                        dns_names = [string[]](Get-CertificateDnsNames -Certificate $certificate)
                        not_before = Format-UtcTimestamp -Value $certificate.NotBefore
                        not_after = Format-UtcTimestamp -Value $certificate.NotAfter
                        has_private_key = [bool]$certificate.HasPrivateKey
                        key_readers = [string[]](Get-CertificateKeyReaders -Certificate $certificate)
                    })
            }
        } finally {
            $store.Close()
        }
    }
    return , $certificates
}

function Get-PfxLeaf {
    <#
    .SYNOPSIS
    Return the certificate of a PFX collection that carries the private key (the server
    certificate; the others are its chain).
    .OUTPUTS
    X509Certificate2. Throws when no certificate of the file has a private key.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [System.Security.Cryptography.X509Certificates.X509Certificate2Collection] $Collection,
        [string] $Function = 'remote call'
    )
    foreach ($certificate in $Collection) {
        if ($certificate.HasPrivateKey) { return $certificate }
    }
    throw ('{0}: the PFX file holds no certificate with a private key' -f $Function)
}

function Import-PfxCollection {
    <#
    .SYNOPSIS
    Read a PFX file into an X509Certificate2Collection with the given key storage flags.
    .OUTPUTS
    X509Certificate2Collection. Throws "the password is wrong or the file is not a PKCS#12 file"
    with .NET's reason, never the password.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Path,
        [Parameter(Mandatory = $true)]
        [AllowEmptyString()]
        [string] $Password,
        [Parameter(Mandatory = $true)]
        [System.Security.Cryptography.X509Certificates.X509KeyStorageFlags] $Flags,
        [string] $Function = 'remote call'
    )
    $collection = New-Object -TypeName 'System.Security.Cryptography.X509Certificates.X509Certificate2Collection'
    try {
        $collection.Import($Path, $Password, $Flags)
    } catch {
        $inner = $_.Exception
        while ($null -ne $inner.InnerException) { $inner = $inner.InnerException }
        $reason = $inner.Message
        if ($Password.Length -gt 0 -and $reason.Contains($Password)) { $reason = 'the PFX file could not be read' }
        throw ('{0}: cannot import {1}: the password is wrong or the file is not a PKCS#12 (PFX) file ({2})' -f $Function, $Path, $reason)
    }
    return , $collection
}

function Import-IisCertificate {
    <#
    .SYNOPSIS
    Import a PFX file into Cert:\LocalMachine\<store> (private key in the machine key store,
    non-exportable unless asked), then delete the PFX file, success or not.
    .PARAMETER Json
    {"path": PFX path on the host, "password": secret string, "store": "My" | "WebHosting" | ...,
    "exportable": bool (default false), "thumbprint": the PFX's thumbprint (optional)}.
    .OUTPUTS
    One line {"thumbprint", "subject", "store", "imported"}; imported is false when a certificate
    with that thumbprint is already in the store (then no key is persisted a second time: the file
    is read first without PersistKeySet). With "thumbprint" given and already in the store, the
    file is not needed: a call re-sent after a lost reply (the file is deleted by then) answers
    imported false instead of failing (steps are idempotent).
    Throws when the file is missing, the password is wrong (the message never contains the
    password), the file holds no private key, or the store does not exist.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [AllowEmptyString()]
        [string] $Json
    )
    $function = 'Import-IisCertificate'
    $call = ConvertFrom-CallJson -Json $Json -Function $function
    $path = Get-CallValue -Call $call -Name 'path' -Type string -Required -Function $function
    # Checked before the try: the finally block deletes $path, which must be the absolute path given.
    Assert-AbsolutePath -Path $path -Function $function
    try {
        $password = Get-CallValue -Call $call -Name 'password' -Type string -Default '' -Function $function
        $storeName = Get-CallValue -Call $call -Name 'store' -Type string -Default 'My' -Function $function
        $exportable = Get-CallValue -Call $call -Name 'exportable' -Type boolean -Default $false -Function $function
        Assert-CertificateStoreName -Store $storeName -Function $function
        $expected = Get-CallValue -Call $call -Name 'thumbprint' -Type string -Default '' -Function $function
        if ($expected -and $expected -notmatch '^[0-9A-Fa-f]{40}$') {
            throw ('{0}: thumbprint must be 40 hex digits' -f $function)
        }
        $known = $null
        if ($expected) {
            $existing = Open-MachineCertificateStore -Store $storeName
            if ($null -ne $existing) {
                try {
                    $found = $existing.Certificates.Find([System.Security.Cryptography.X509Certificates.X509FindType]::FindByThumbprint, $expected, $false)
                    if ($found.Count -gt 0) { $known = $found[0] }
                } finally {
                    $existing.Close()
                }
            }
        }
        if ($null -ne $known) {
            $thumbprint = $known.Thumbprint.ToUpperInvariant()
            $subject = [string]$known.Subject
            $imported = $false
        } elseif (-not [System.IO.File]::Exists($path)) {
            throw ('{0}: PFX file {1} does not exist' -f $function, $path)
        } else {
            $machineKey = [System.Security.Cryptography.X509Certificates.X509KeyStorageFlags]::MachineKeySet
            # First read: no PersistKeySet, so the key goes away again when the collection is reset.
            $probe = Import-PfxCollection -Path $path -Password $password -Flags $machineKey -Function $function
            try {
                $leaf = Get-PfxLeaf -Collection $probe -Function $function
                $thumbprint = $leaf.Thumbprint.ToUpperInvariant()
                $subject = [string]$leaf.Subject
            } finally {
                foreach ($certificate in $probe) { $certificate.Reset() }
            }
            $store = Open-MachineCertificateStore -Store $storeName -Write
            if ($null -eq $store) {
                throw ('{0}: certificate store LocalMachine\{1} does not exist' -f $function, $storeName)
            }
            try {
                $imported = $false
                if ($store.Certificates.Find([System.Security.Cryptography.X509Certificates.X509FindType]::FindByThumbprint, $thumbprint, $false).Count -eq 0) {
                    $flags = $machineKey -bor [System.Security.Cryptography.X509Certificates.X509KeyStorageFlags]::PersistKeySet
                    if ($exportable) {
                        $flags = $flags -bor [System.Security.Cryptography.X509Certificates.X509KeyStorageFlags]::Exportable
                    }
                    $collection = Import-PfxCollection -Path $path -Password $password -Flags $flags -Function $function
                    $store.Add((Get-PfxLeaf -Collection $collection -Function $function))
                    $imported = $true
                }
            } finally {
                $store.Close()
            }
        }
    } finally {
        # The PFX was uploaded only for this call (contract): never leave it on disk.
        if ([System.IO.File]::Exists($path)) {
            try {
                [System.IO.File]::Delete($path)
            } catch {
                Write-Warning -Message ('{0}: could not delete {1}: {2}' -f $function, $path, $_.Exception.Message)
            }
        }
    }
    Write-CallResult -InputObject ([ordered]@{
            thumbprint = $thumbprint
            subject = $subject
            store = $storeName
            imported = $imported
        })
}

function Grant-CertificateKeyAccess {
    <#
    .SYNOPSIS
    Grant Read on a certificate's private key file to a principal (an application pool identity
    that uses the certificate itself; HTTP.sys does not need it to terminate TLS, field notes IIS).
    .PARAMETER Json
    {"thumbprint": 40 hex digits, "store": "My" | ..., "principal": "IIS AppPool\\api"}
    .OUTPUTS
    One line {"changed": bool}; false when the principal already has an Allow entry including Read.
    Throws when the certificate is not in the store, has no private key, or its key file cannot be
    found (CNG Crypto\Keys or CAPI Crypto\RSA\MachineKeys), or the principal is unknown.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [AllowEmptyString()]
        [string] $Json
    )
    $function = 'Grant-CertificateKeyAccess'
    $call = ConvertFrom-CallJson -Json $Json -Function $function
    $thumbprint = Get-CallValue -Call $call -Name 'thumbprint' -Type string -Required -Function $function
    $storeName = Get-CallValue -Call $call -Name 'store' -Type string -Default 'My' -Function $function
    $principal = Get-CallValue -Call $call -Name 'principal' -Type string -Required -Function $function
    if ($thumbprint -notmatch '^[0-9A-Fa-f]{40}$') {
        throw ('{0}: "thumbprint" must be 40 hex digits, got "{1}"' -f $function, $thumbprint)
    }
    Assert-CertificateStoreName -Store $storeName -Function $function
    $store = Open-MachineCertificateStore -Store $storeName
    if ($null -eq $store) {
        throw ('{0}: certificate store LocalMachine\{1} does not exist' -f $function, $storeName)
    }
    try {
        $found = $store.Certificates.Find([System.Security.Cryptography.X509Certificates.X509FindType]::FindByThumbprint, $thumbprint, $false)
        if ($found.Count -eq 0) {
            throw ('{0}: no certificate {1} in LocalMachine\{2}' -f $function, $thumbprint, $storeName)
        }
        $certificate = $found[0]
        if (-not $certificate.HasPrivateKey) {
            throw ('{0}: certificate {1} in LocalMachine\{2} has no private key' -f $function, $thumbprint, $storeName)
        }
        $keyPath = Get-CertificateKeyPath -Certificate $certificate
    } finally {
        $store.Close()
    }
    if ($null -eq $keyPath) {
        throw ('{0}: the private key file of certificate {1} was not found under {2}\Microsoft\Crypto (Keys or RSA\MachineKeys)' -f $function, $thumbprint, $env:ProgramData)
    }
    $sid = Resolve-PrincipalSid -Principal $principal -Function $function
    $security = Get-PathSecurity -Path $keyPath
    $read = [int][System.Security.AccessControl.FileSystemRights]::Read
    foreach ($rule in $security.GetAccessRules($true, $true, [System.Security.Principal.SecurityIdentifier])) {
        if ($rule.AccessControlType -eq [System.Security.AccessControl.AccessControlType]::Allow -and
            $rule.IdentityReference -eq $sid -and (([int]$rule.FileSystemRights -band $read) -eq $read)) {
            Write-CallResult -InputObject ([ordered]@{ changed = $false })
            return
        }
    }
    $rule = New-Object -TypeName 'System.Security.AccessControl.FileSystemAccessRule' -ArgumentList @($sid, [System.Security.AccessControl.FileSystemRights]::Read, [System.Security.AccessControl.AccessControlType]::Allow)
    $security.AddAccessRule($rule)
    Set-PathSecurity -Path $keyPath -Security $security -Label ('the private key file {0}' -f $keyPath) -Function $function
    Write-CallResult -InputObject ([ordered]@{ changed = $true })
}
