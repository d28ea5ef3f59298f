# PyinfraIis module, part 80: folders and file system ACLs (docs/remote-functions.md, "Change: file
# system", "acls" of Get-HostState). ACLs are read as SDDL (parsed by pyinfra_iis/sddl.py) and written one
# rule at a time, DACL only (.NET Get/SetAccessControl(Access): Set-Acl would also write the owner).

function Assert-AbsolutePath {
    # Throw unless Path is an absolute Windows path (C:\... or \\server\share\...).
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [AllowEmptyString()] [string] $Path, [string] $Function = 'remote call')
    if ($Path -notmatch '^([A-Za-z]:\\|\\\\[^\\]+\\[^\\]+)') {
        throw ('{0}: "{1}" is not an absolute Windows path (C:\... or \\server\share\...)' -f $Function, $Path)
    }
}

function Get-PathSecurity {
    # The DACL of an existing file or folder (FileSecurity / DirectorySecurity, Access section only).
    # Docs: https://learn.microsoft.com/dotnet/api/system.io.directory.getaccesscontrol
    # Docs: https://learn.microsoft.com/dotnet/api/system.io.file.getaccesscontrol
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [string] $Path)
    $sections = [System.Security.AccessControl.AccessControlSections]::Access
    if ([System.IO.Directory]::Exists($Path)) { return [System.IO.Directory]::GetAccessControl($Path, $sections) }
    return [System.IO.File]::GetAccessControl($Path, $sections)
}

function Get-PathAclReport {
    # One path for Get-HostState: {exists: false} or {exists, is_directory, is_reparse_point, sddl (the
    # DACL), sids (SID -> account name, for the SIDs this host can translate)}.
    # Docs: https://learn.microsoft.com/dotnet/api/system.security.accesscontrol.objectsecurity.getsecuritydescriptorsddlform
    # Docs: https://learn.microsoft.com/dotnet/api/system.security.principal.securityidentifier.translate
    # Docs: https://learn.microsoft.com/dotnet/api/system.io.file.getattributes
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [string] $Path, [string] $Function = 'remote call')
    $isDirectory = [System.IO.Directory]::Exists($Path)
    if (-not $isDirectory -and -not [System.IO.File]::Exists($Path)) { return [ordered]@{ exists = $false } }
    try {
        $security = Get-PathSecurity -Path $Path
        $sids = [ordered]@{}
        foreach ($rule in $security.GetAccessRules($true, $true, [System.Security.Principal.SecurityIdentifier])) {
            $sid = [string]$rule.IdentityReference.Value
            # A SID no account translates to (a pool not created yet) is left out of the map.
            try { if (-not $sids.Contains($sid)) { $sids[$sid] = [string]$rule.IdentityReference.Translate([System.Security.Principal.NTAccount]).Value } } catch { continue }
        }
        $reparse = ([System.IO.File]::GetAttributes($Path) -band [System.IO.FileAttributes]::ReparsePoint) -ne 0
        $sddl = $security.GetSecurityDescriptorSddlForm([System.Security.AccessControl.AccessControlSections]::Access)
    } catch {
        throw ('{0}: cannot read the ACL of {1}: {2}' -f $Function, $Path, $_.Exception.Message)
    }
    return [ordered]@{ exists = $true; is_directory = $isDirectory; is_reparse_point = $reparse; sddl = $sddl; sids = $sids }
}

function Get-GrantRecord {
    # The "grant_record" part of Get-HostState: the text of the record of rights the project granted (Write-TextFile
    # into a folder Initialize-Directory protected), or $null when missing or its folder is untrusted (then ignored).
    # Docs: https://learn.microsoft.com/dotnet/api/system.io.file.readalltext
    [CmdletBinding()]
    param([string] $Path = 'C:\ProgramData\pyinfra-iis\grants\granted.json')
    if (-not [System.IO.File]::Exists($Path)) { return $null }
    try { Assert-TrustedFolder -Path ([System.IO.Path]::GetDirectoryName($Path)) } catch { return $null }
    return [System.IO.File]::ReadAllText($Path, (New-Object -TypeName 'System.Text.UTF8Encoding' -ArgumentList $false))
}

function Get-PathAclState {
    # The "acls" part of Get-HostState: {path: Get-PathAclReport} for each absolute path.
    [CmdletBinding()]
    param([AllowEmptyCollection()] [string[]] $Paths = @(), [string] $Function = 'remote call')
    $state = [ordered]@{}
    foreach ($path in $Paths) {
        Assert-AbsolutePath -Path $path -Function $Function
        $state[$path] = Get-PathAclReport -Path $path -Function $Function
    }
    return $state
}

function Assert-TrustedFolder {
    # Throw unless Path is a folder that is no reparse point and is owned by SYSTEM, Administrators or TrustedInstaller.
    # Docs: https://learn.microsoft.com/dotnet/api/system.security.accesscontrol.objectsecurity.getowner
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [string] $Path, [string] $Function = 'remote call')
    if (([System.IO.File]::GetAttributes($Path) -band [System.IO.FileAttributes]::ReparsePoint) -ne 0) {
        throw ('{0}: {1} is a reparse point (junction or symbolic link); refusing to use it' -f $Function, $Path)
    }
    $owner = [System.IO.Directory]::GetAccessControl($Path, [System.Security.AccessControl.AccessControlSections]::Owner).GetOwner([System.Security.Principal.SecurityIdentifier])
    $trusted = @('S-1-5-18', 'S-1-5-32-544', 'S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464')
    if ($trusted -notcontains $owner.Value) {
        throw ('{0}: {1} is owned by {2}, not SYSTEM or Administrators; another account created it first: refusing to use it' -f $Function, $Path, $owner.Value)
    }
}

function Initialize-ProtectedFolder {
    # Create a folder with a protected ACL (default: SYSTEM and Administrators full control), or check an existing
    # one. Every existing ancestor and the folder itself must be trusted (Assert-TrustedFolder), also right after
    # the create (another account may win the race); missing parents are created with their inherited ACL, only
    # the folder gets Sddl. Without -Sddl (the module's own folders), an existing folder's DACL is reset to it.
    # Returns $true when it was created.
    # Docs: https://learn.microsoft.com/dotnet/api/system.io.directory.createdirectory#system-io-directory-createdirectory(system-string-system-security-accesscontrol-directorysecurity)
    # Docs: https://learn.microsoft.com/dotnet/api/system.security.accesscontrol.objectsecurity.setsecuritydescriptorsddlform
    # Docs: https://learn.microsoft.com/dotnet/api/system.io.directory.setaccesscontrol
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [string] $Path, [string] $Function = 'remote call', [string] $Sddl = 'D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)')
    Assert-AbsolutePath -Path $Path -Function $Function
    $full = [System.IO.Path]::GetFullPath($Path).TrimEnd('\')
    $parent = [System.IO.Path]::GetDirectoryName($full)
    while ($null -ne $parent -and $null -ne [System.IO.Path]::GetDirectoryName($parent)) {
        if ([System.IO.Directory]::Exists($parent)) { Assert-TrustedFolder -Path $parent -Function $Function }
        $parent = [System.IO.Path]::GetDirectoryName($parent)
    }
    if ([System.IO.File]::Exists($full)) { throw ('{0}: {1} exists and is a file, not a folder' -f $Function, $full) }
    $security = New-Object -TypeName 'System.Security.AccessControl.DirectorySecurity'
    $security.SetSecurityDescriptorSddlForm($Sddl)
    $created = -not [System.IO.Directory]::Exists($full)
    if ($created) {
        try {
            [void][System.IO.Directory]::CreateDirectory([System.IO.Path]::GetDirectoryName($full))
            [void][System.IO.Directory]::CreateDirectory($full, $security)
        } catch { throw ('{0}: cannot create {1} with a protected ACL: {2}' -f $Function, $full, $_.Exception.Message) }
    }
    Assert-TrustedFolder -Path $full -Function $Function
    if (-not $created -and -not $PSBoundParameters.ContainsKey('Sddl')) { [System.IO.Directory]::SetAccessControl($full, $security) }
    return $created
}

function Initialize-Directory {
    # {"path", "sddl"?} -> {"created": bool}. Creates the folder and missing parents; with "sddl", a new
    # folder gets that protected ACL and an existing one is checked (Initialize-ProtectedFolder).
    # Docs: https://learn.microsoft.com/dotnet/api/system.io.directory.createdirectory
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [AllowEmptyString()] [string] $Json)
    $function = 'Initialize-Directory'
    $call = ConvertFrom-CallJson -Json $Json -Function $function
    $path = Get-CallValue -Call $call -Name 'path' -Type string -Required -Function $function
    $sddl = Get-CallValue -Call $call -Name 'sddl' -Type string -Default '' -Function $function
    Assert-AbsolutePath -Path $path -Function $function
    if ($sddl) {
        $created = Initialize-ProtectedFolder -Path $path -Function $function -Sddl $sddl
    } elseif ([System.IO.Directory]::Exists($path)) {
        $created = $false
    } elseif ([System.IO.File]::Exists($path)) {
        throw ('{0}: {1} exists and is a file, not a folder' -f $function, $path)
    } else {
        try { [void][System.IO.Directory]::CreateDirectory($path) } catch { throw ('{0}: cannot create {1}: {2}' -f $function, $path, $_.Exception.Message) }
        $created = $true
    }
    Write-CallResult -InputObject ([ordered]@{ created = $created })
}

function Get-PathRuleTarget {
    # Read a Grant/Revoke call: the existing path, its DACL, the rule's SID ("sid" when given: valid
    # before its account exists, e.g. S-1-5-82-... of a pool; else the translated "principal") and the
    # SID's explicit Allow rules. $null for the SID when -Lenient and "principal" does not resolve.
    # Docs: https://learn.microsoft.com/dotnet/api/system.security.principal.ntaccount.translate
    # Docs: https://learn.microsoft.com/dotnet/api/system.security.accesscontrol.commonobjectsecurity.getaccessrules
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [psobject] $Call, [string] $Function = 'remote call', [switch] $Lenient)
    $path = Get-CallValue -Call $Call -Name 'path' -Type string -Required -Function $Function
    Assert-AbsolutePath -Path $path -Function $Function
    $isDirectory = [System.IO.Directory]::Exists($path)
    if (-not $isDirectory -and -not [System.IO.File]::Exists($path)) { throw ('{0}: {1} does not exist' -f $Function, $path) }
    $text = Get-CallValue -Call $Call -Name 'sid' -Type string -Default '' -Function $Function
    $principal = Get-CallValue -Call $Call -Name 'principal' -Type string -Default $text -Function $Function
    try {
        if ($text) { $sid = New-Object -TypeName 'System.Security.Principal.SecurityIdentifier' -ArgumentList $text } else {
            $sid = (New-Object -TypeName 'System.Security.Principal.NTAccount' -ArgumentList $principal).Translate([System.Security.Principal.SecurityIdentifier])
        }
    } catch {
        if ($Lenient -and -not $text) { return @{ sid = $null } }
        throw ('{0}: "{1}" is not a SID or an account known on this host (send its "sid")' -f $Function, $principal)
    }
    $security = Get-PathSecurity -Path $path
    $current = @($security.GetAccessRules($true, $false, [System.Security.Principal.SecurityIdentifier]) | Where-Object -FilterScript {
            $_.AccessControlType -eq [System.Security.AccessControl.AccessControlType]::Allow -and $_.IdentityReference -eq $sid })
    return @{ path = $path; is_directory = $isDirectory; sid = $sid; security = $security; current = $current }
}

function Get-NonCanonicalMessage([string]$Path, [string]$Function) {
    # SetAccessRule/RemoveAccessRuleAll refuse a DACL out of canonical order (CommonAcl, "not in canonical form").
    return ('{0}: the ACL of {1} is not in canonical order (deny before allow, explicit before inherited); fix it (icacls "{1}" /verify, or reset it) and retry' -f $Function, $Path)
}

function Set-PathSecurity {
    # Write back a DACL read with Get-PathSecurity.
    # Docs: https://learn.microsoft.com/dotnet/api/system.io.directory.setaccesscontrol
    # Docs: https://learn.microsoft.com/dotnet/api/system.io.file.setaccesscontrol
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [hashtable] $Target, [string] $Function = 'remote call')
    try {
        if ($Target.is_directory) { [System.IO.Directory]::SetAccessControl($Target.path, $Target.security) } else {
            [System.IO.File]::SetAccessControl($Target.path, $Target.security)
        }
    } catch {
        throw ('{0}: cannot write the ACL of {1}: {2}' -f $Function, $Target.path, $_.Exception.Message)
    }
}

function Grant-PathAccess {
    # {"path", "principal", "sid"?, "rights", "inheritance"?, "propagation"?} -> {"changed": bool}: the
    # SID's explicit Allow entries on the path become exactly this rule (SetAccessRule; Windows adds
    # Synchronize); other entries stay. .NET FileSystemRights / InheritanceFlags / PropagationFlags names.
    # Docs: https://learn.microsoft.com/dotnet/api/system.security.accesscontrol.filesystemaccessrule.-ctor
    # Docs: https://learn.microsoft.com/dotnet/api/system.security.accesscontrol.filesystemsecurity.setaccessrule
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [AllowEmptyString()] [string] $Json)
    $function = 'Grant-PathAccess'
    $call = ConvertFrom-CallJson -Json $Json -Function $function
    $target = Get-PathRuleTarget -Call $call -Function $function
    $inheritance = 'None'
    if ($target.is_directory) { $inheritance = 'ContainerInherit, ObjectInherit' }
    $values = @{}
    $fields = [ordered]@{ rights = [System.Security.AccessControl.FileSystemRights]; inheritance = [System.Security.AccessControl.InheritanceFlags]; propagation = [System.Security.AccessControl.PropagationFlags] }
    $defaults = @{ rights = ''; inheritance = $inheritance; propagation = 'None' }
    foreach ($field in $fields.Keys) {
        $text = Get-CallValue -Call $call -Name $field -Type string -Default $defaults[$field] -Required:($field -eq 'rights') -Function $function
        try {
            if ($text -match '^\s*[0-9-]') { throw 'numbers are not names' }
            $values[$field] = [System.Enum]::Parse($fields[$field], $text, $true)
        } catch {
            throw ('{0}: "{1}" must be {2} names separated by ", ", got "{3}"' -f $function, $field, $fields[$field].Name, $text)
        }
    }
    if (-not $target.is_directory -and $values.inheritance -ne [System.Security.AccessControl.InheritanceFlags]::None) {
        throw ('{0}: {1} is a file: "inheritance" must be "None"' -f $function, $target.path)
    }
    $current = $target.current
    $wanted = [int]$values.rights -bor [int][System.Security.AccessControl.FileSystemRights]::Synchronize
    $same = $current.Count -eq 1 -and [int]$current[0].FileSystemRights -eq $wanted -and
        $current[0].InheritanceFlags -eq $values.inheritance -and $current[0].PropagationFlags -eq $values.propagation
    if (-not $same) {
        $rule = New-Object -TypeName 'System.Security.AccessControl.FileSystemAccessRule' -ArgumentList @($target.sid, $values.rights, $values.inheritance, $values.propagation, [System.Security.AccessControl.AccessControlType]::Allow)
        try { $target.security.SetAccessRule($rule) } catch [System.InvalidOperationException] { throw (Get-NonCanonicalMessage -Path $target.path -Function $function) }
        Set-PathSecurity -Target $target -Function $function
    }
    Write-CallResult -InputObject ([ordered]@{ changed = (-not $same) })
}

function Revoke-PathAccess {
    # {"path", "principal", "sid"?} -> {"changed": bool}: remove the SID's explicit Allow entries
    # (RemoveAccessRuleAll of an Allow rule; PurgeAccessRules would also drop its Deny entries).
    # Inherited entries stay; a "principal" that no longer resolves (no "sid") changes nothing.
    # Docs: https://learn.microsoft.com/dotnet/api/system.security.accesscontrol.filesystemsecurity.removeaccessruleall
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [AllowEmptyString()] [string] $Json)
    $function = 'Revoke-PathAccess'
    $target = Get-PathRuleTarget -Call (ConvertFrom-CallJson -Json $Json -Function $function) -Function $function -Lenient
    $changed = $null -ne $target.sid -and $target.current.Count -gt 0
    if ($changed) {
        $pattern = New-Object -TypeName 'System.Security.AccessControl.FileSystemAccessRule' -ArgumentList @($target.sid, [System.Security.AccessControl.FileSystemRights]::Read, [System.Security.AccessControl.AccessControlType]::Allow)
        try { $target.security.RemoveAccessRuleAll($pattern) } catch [System.InvalidOperationException] { throw (Get-NonCanonicalMessage -Path $target.path -Function $function) }
        Set-PathSecurity -Target $target -Function $function
    }
    Write-CallResult -InputObject ([ordered]@{ changed = $changed })
}
