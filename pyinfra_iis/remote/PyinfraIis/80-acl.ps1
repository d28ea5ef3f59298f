# PyinfraIis module, part 80: folders and file system ACLs.
#
# Contract: docs/remote-functions.md, "Change: file system" and the "acls" part of Get-HostState.
# ACLs are read and written with the .NET API, DACL only
# (File/Directory GetAccessControl(path, AccessControlSections.Access) and SetAccessControl): Set-Acl
# with an object from Get-Acl also writes the owner, which fails with "The security identifier is not
# allowed to be the owner of this object" when the owner is not the caller [R].
# FileSystemAccessRule adds Synchronize to every Allow rule it builds, so "ReadAndExecute" is stored
# and read back as "ReadAndExecute, Synchronize" [V: .NET FileSystemAccessRule reference source].
# https://learn.microsoft.com/dotnet/api/system.security.accesscontrol.filesystemaccessrule
# https://learn.microsoft.com/dotnet/api/system.security.accesscontrol.objectsecurity.setaccessrule

function Assert-AbsolutePath {
    <#
    .SYNOPSIS
    Check that a path is an absolute Windows path (C:\... or \\server\share\...).
    .OUTPUTS
    Nothing. Throws naming the path otherwise.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [AllowEmptyString()]
        [string] $Path,
        [string] $Function = 'remote call'
    )
    if ($Path -notmatch '^([A-Za-z]:\\|\\\\[^\\]+\\[^\\]+)') {
        throw ('{0}: "{1}" is not an absolute Windows path (C:\... or \\server\share\...)' -f $Function, $Path)
    }
}

function Resolve-PrincipalSid {
    <#
    .SYNOPSIS
    Translate an account name (IIS AppPool\api, IIS_IUSRS, IUSR, DOMAIN\user) to its SID.
    .OUTPUTS
    System.Security.Principal.SecurityIdentifier. Throws when the name is unknown on the host (an
    application pool identity exists only once its pool does).
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Principal,
        [string] $Function = 'remote call'
    )
    try {
        $account = New-Object -TypeName 'System.Security.Principal.NTAccount' -ArgumentList $Principal
        return $account.Translate([System.Security.Principal.SecurityIdentifier])
    } catch {
        throw ('{0}: principal "{1}" is unknown on this host (for IIS AppPool\<name>, does the application pool exist?)' -f $Function, $Principal)
    }
}

function Get-PrincipalName {
    <#
    .SYNOPSIS
    Return the account name of a SID as Windows shows it (e.g. "IIS APPPOOL\api",
    "BUILTIN\IIS_IUSRS", "NT AUTHORITY\IUSR"), or the SID string when it maps to no account.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [System.Security.Principal.IdentityReference] $Identity
    )
    try {
        return [string]$Identity.Translate([System.Security.Principal.NTAccount]).Value
    } catch {
        return [string]$Identity.Value
    }
}

function Get-PathSecurity {
    <#
    .SYNOPSIS
    Return the DACL of a file or folder (FileSecurity / DirectorySecurity, access rules only).
    .OUTPUTS
    System.Security.AccessControl.FileSystemSecurity. Throws when the path does not exist.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Path
    )
    $sections = [System.Security.AccessControl.AccessControlSections]::Access
    if ([System.IO.Directory]::Exists($Path)) {
        return [System.IO.Directory]::GetAccessControl($Path, $sections)
    }
    return [System.IO.File]::GetAccessControl($Path, $sections)
}

function Set-PathSecurity {
    <#
    .SYNOPSIS
    Write back a DACL read with Get-PathSecurity.
    .PARAMETER Label
    How the error message names the path (default: the path).
    .OUTPUTS
    Nothing. Throws '<Function>: cannot write the ACL of <Label>: <reason>'.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [string] $Path,
        [Parameter(Mandatory = $true)]
        [System.Security.AccessControl.FileSystemSecurity] $Security,
        [string] $Label,
        [string] $Function = 'remote call'
    )
    if ([string]::IsNullOrEmpty($Label)) { $Label = $Path }
    try {
        if ([System.IO.Directory]::Exists($Path)) {
            [System.IO.Directory]::SetAccessControl($Path, $Security)
        } else {
            [System.IO.File]::SetAccessControl($Path, $Security)
        }
    } catch {
        throw ('{0}: cannot write the ACL of {1}: {2}' -f $Function, $Label, $_.Exception.Message)
    }
}

function Get-ExplicitAllowRules {
    <#
    .SYNOPSIS
    Return the explicit (not inherited) Allow rules of a DACL that belong to a SID.
    .OUTPUTS
    [object[]] of FileSystemAccessRule.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [System.Security.AccessControl.FileSystemSecurity] $Security,
        [Parameter(Mandatory = $true)]
        [System.Security.Principal.SecurityIdentifier] $Sid
    )
    $rules = New-Object -TypeName 'System.Collections.ArrayList'
    foreach ($rule in $Security.GetAccessRules($true, $false, [System.Security.Principal.SecurityIdentifier])) {
        if ($rule.AccessControlType -eq [System.Security.AccessControl.AccessControlType]::Allow -and $rule.IdentityReference -eq $Sid) {
            [void]$rules.Add($rule)
        }
    }
    return , $rules.ToArray()
}

function ConvertTo-AclEntryJson {
    <#
    .SYNOPSIS
    Return one ACL entry as the contract's JSON: principal, type, rights (FileSystemRights names,
    e.g. "ReadAndExecute, Synchronize"), inherited, inheritance, propagation.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [System.Security.AccessControl.FileSystemAccessRule] $Rule
    )
    return [ordered]@{
        principal = Get-PrincipalName -Identity $Rule.IdentityReference
        type = [string]$Rule.AccessControlType
        rights = [string]$Rule.FileSystemRights
        inherited = [bool]$Rule.IsInherited
        inheritance = [string]$Rule.InheritanceFlags
        propagation = [string]$Rule.PropagationFlags
    }
}

function Get-PathAclState {
    <#
    .SYNOPSIS
    Return {path: {"exists": false}} or {path: {exists, is_directory, inheritance_protected,
    entries: [ENTRY, ...]}} for Get-HostState; entries in DACL order, explicit and inherited.
    .PARAMETER Paths
    Absolute Windows paths.
    .OUTPUTS
    Ordered dictionary. Throws when a path is not absolute or its ACL cannot be read.
    #>
    [CmdletBinding()]
    param(
        [AllowEmptyCollection()]
        [string[]] $Paths = @(),
        [string] $Function = 'remote call'
    )
    $state = [ordered]@{}
    foreach ($path in $Paths) {
        Assert-AbsolutePath -Path $path -Function $Function
        $isDirectory = [System.IO.Directory]::Exists($path)
        if (-not $isDirectory -and -not [System.IO.File]::Exists($path)) {
            $state[$path] = [ordered]@{ exists = $false }
            continue
        }
        try {
            $security = Get-PathSecurity -Path $path
        } catch {
            throw ('{0}: cannot read the ACL of {1}: {2}' -f $Function, $path, $_.Exception.Message)
        }
        $entries = [System.Collections.ArrayList]::new()
        foreach ($rule in $security.GetAccessRules($true, $true, [System.Security.Principal.SecurityIdentifier])) {
            [void]$entries.Add((ConvertTo-AclEntryJson -Rule $rule))
        }
        $state[$path] = [ordered]@{
            exists = $true
            is_directory = $isDirectory
            inheritance_protected = [bool]$security.AreAccessRulesProtected
            entries = $entries.ToArray()
        }
    }
    return $state
}

function Initialize-Directory {
    <#
    .SYNOPSIS
    Create a folder (and its missing parents) when it does not exist.
    .PARAMETER Json
    {"path": "C:\\sites\\api\\logs"}
    .OUTPUTS
    One line {"created": bool}. Throws when the path is not absolute, is an existing file, or cannot
    be created.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [AllowEmptyString()]
        [string] $Json
    )
    $function = 'Initialize-Directory'
    $call = ConvertFrom-CallJson -Json $Json -Function $function
    $path = Get-CallValue -Call $call -Name 'path' -Type string -Required -Function $function
    Assert-AbsolutePath -Path $path -Function $function
    if ([System.IO.Directory]::Exists($path)) {
        Write-CallResult -InputObject ([ordered]@{ created = $false })
        return
    }
    if ([System.IO.File]::Exists($path)) {
        throw ('{0}: {1} exists and is a file, not a folder' -f $function, $path)
    }
    try {
        [void][System.IO.Directory]::CreateDirectory($path)
    } catch {
        throw ('{0}: cannot create {1}: {2}' -f $function, $path, $_.Exception.Message)
    }
    Write-CallResult -InputObject ([ordered]@{ created = $true })
}

function ConvertTo-FlagsValue {
    <#
    .SYNOPSIS
    Parse a .NET flags enum value from its names ("ReadAndExecute, Synchronize").
    .PARAMETER Type
    The enum type, e.g. [System.Security.AccessControl.FileSystemRights].
    .OUTPUTS
    The enum value. Throws naming the field and the valid names.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [type] $Type,
        [Parameter(Mandatory = $true)]
        [AllowEmptyString()]
        [string] $Text,
        [Parameter(Mandatory = $true)]
        [string] $Field,
        [string] $Function = 'remote call'
    )
    $isNumeric = $Text.Trim() -match '^[0-9-]'
    try {
        if (-not $isNumeric -and $Text.Trim().Length -gt 0) {
            return [System.Enum]::Parse($Type, $Text, $true)
        }
    } catch {
        # fall through to the error below
    }
    throw ('{0}: "{1}" must be {2} names separated by ", " ({3}), got "{4}"' -f $Function, $Field, $Type.Name, [string]::Join(', ', [System.Enum]::GetNames($Type)), $Text)
}

function Grant-PathAccess {
    <#
    .SYNOPSIS
    Make the principal's EXPLICIT Allow entry on a path exactly the given rights
    (FileSystemAccessRule + SetAccessRule, which replaces the principal's explicit Allow entries),
    leaving every other entry (its Deny entries, other principals, inherited entries) as it is.
    .PARAMETER Json
    {"path", "principal", "rights": FileSystemRights names, "inheritance": InheritanceFlags names
    (default "ContainerInherit, ObjectInherit" for a folder, "None" for a file), "propagation":
    PropagationFlags names (default "None")}.
    .OUTPUTS
    One line {"changed": bool}; false when the principal already has exactly one explicit Allow
    entry with these rights (plus the Synchronize that Windows adds), inheritance and propagation.
    Throws when the path does not exist, the principal is unknown, or a flags name is invalid.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [AllowEmptyString()]
        [string] $Json
    )
    $function = 'Grant-PathAccess'
    $call = ConvertFrom-CallJson -Json $Json -Function $function
    $path = Get-CallValue -Call $call -Name 'path' -Type string -Required -Function $function
    $principal = Get-CallValue -Call $call -Name 'principal' -Type string -Required -Function $function
    $rightsText = Get-CallValue -Call $call -Name 'rights' -Type string -Required -Function $function
    Assert-AbsolutePath -Path $path -Function $function
    $isDirectory = [System.IO.Directory]::Exists($path)
    if (-not $isDirectory -and -not [System.IO.File]::Exists($path)) {
        throw ('{0}: {1} does not exist' -f $function, $path)
    }
    $defaultInheritance = 'None'
    if ($isDirectory) { $defaultInheritance = 'ContainerInherit, ObjectInherit' }
    $inheritanceText = Get-CallValue -Call $call -Name 'inheritance' -Type string -Default $defaultInheritance -Function $function
    $propagationText = Get-CallValue -Call $call -Name 'propagation' -Type string -Default 'None' -Function $function

    $rights = ConvertTo-FlagsValue -Type ([System.Security.AccessControl.FileSystemRights]) -Text $rightsText -Field 'rights' -Function $function
    $inheritance = ConvertTo-FlagsValue -Type ([System.Security.AccessControl.InheritanceFlags]) -Text $inheritanceText -Field 'inheritance' -Function $function
    $propagation = ConvertTo-FlagsValue -Type ([System.Security.AccessControl.PropagationFlags]) -Text $propagationText -Field 'propagation' -Function $function
    if (-not $isDirectory -and $inheritance -ne [System.Security.AccessControl.InheritanceFlags]::None) {
        throw ('{0}: {1} is a file: "inheritance" must be "None"' -f $function, $path)
    }
    $sid = Resolve-PrincipalSid -Principal $principal -Function $function

    $security = Get-PathSecurity -Path $path
    $wanted = [System.Security.AccessControl.FileSystemRights]([int]$rights -bor [int][System.Security.AccessControl.FileSystemRights]::Synchronize)
    $current = Get-ExplicitAllowRules -Security $security -Sid $sid
    if ($current.Count -eq 1 -and $current[0].FileSystemRights -eq $wanted -and
        $current[0].InheritanceFlags -eq $inheritance -and $current[0].PropagationFlags -eq $propagation) {
        Write-CallResult -InputObject ([ordered]@{ changed = $false })
        return
    }
    $rule = New-Object -TypeName 'System.Security.AccessControl.FileSystemAccessRule' -ArgumentList @($sid, $rights, $inheritance, $propagation, [System.Security.AccessControl.AccessControlType]::Allow)
    $security.SetAccessRule($rule)
    Set-PathSecurity -Path $path -Security $security -Function $function
    Write-CallResult -InputObject ([ordered]@{ changed = $true })
}

function Revoke-PathAccess {
    <#
    .SYNOPSIS
    Remove the principal's EXPLICIT Allow entries from a path; its Deny entries and inherited
    entries are untouched.
    .DESCRIPTION
    Uses RemoveAccessRuleAll with an Allow rule, which removes every Allow rule of that SID, rather
    than PurgeAccessRules, which would also remove the principal's Deny entries.
    .PARAMETER Json
    {"path", "principal"}
    .OUTPUTS
    One line {"changed": bool}; false when there was no such entry, or when the principal no longer
    resolves to an account (its entries then show a bare SID, which no name can match).
    Throws when the path does not exist or the ACL cannot be written.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [AllowEmptyString()]
        [string] $Json
    )
    $function = 'Revoke-PathAccess'
    $call = ConvertFrom-CallJson -Json $Json -Function $function
    $path = Get-CallValue -Call $call -Name 'path' -Type string -Required -Function $function
    $principal = Get-CallValue -Call $call -Name 'principal' -Type string -Required -Function $function
    Assert-AbsolutePath -Path $path -Function $function
    if (-not [System.IO.Directory]::Exists($path) -and -not [System.IO.File]::Exists($path)) {
        throw ('{0}: {1} does not exist' -f $function, $path)
    }
    try {
        $sid = Resolve-PrincipalSid -Principal $principal -Function $function
    } catch {
        Write-CallResult -InputObject ([ordered]@{ changed = $false })
        return
    }
    $security = Get-PathSecurity -Path $path
    $current = Get-ExplicitAllowRules -Security $security -Sid $sid
    if ($current.Count -eq 0) {
        Write-CallResult -InputObject ([ordered]@{ changed = $false })
        return
    }
    $pattern = New-Object -TypeName 'System.Security.AccessControl.FileSystemAccessRule' -ArgumentList @($sid, [System.Security.AccessControl.FileSystemRights]::Read, [System.Security.AccessControl.AccessControlType]::Allow)
    $security.RemoveAccessRuleAll($pattern)
    Set-PathSecurity -Path $path -Security $security -Function $function
    Write-CallResult -InputObject ([ordered]@{ changed = $true })
}
