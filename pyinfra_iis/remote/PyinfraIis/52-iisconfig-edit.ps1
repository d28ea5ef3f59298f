# PyinfraIis module, part 52: Set-IisConfig, the one typed-edit primitive (docs/remote-functions.md,
# "Change: IIS configuration"): navigate, create items, convert each value by the attribute's
# schema type, set, remove; ONE CommitChanges() for all edits, or none. The controller decided
# what differs and words the changes.
# Docs: https://learn.microsoft.com/dotnet/api/microsoft.web.administration.configuration.getsection
#       https://learn.microsoft.com/dotnet/api/microsoft.web.administration.configurationelementcollection (CreateElement, Add, Remove)
#       https://learn.microsoft.com/dotnet/api/microsoft.web.administration.configurationelement (GetChildElement, GetCollection, Attributes, SetAttributeValue)
#       https://learn.microsoft.com/dotnet/api/microsoft.web.administration.configurationelementschema.attributeschemas
#       https://learn.microsoft.com/dotnet/api/microsoft.web.administration.configurationattributeschema (Type, GetEnumValues)

# RSCA runtime members of <binding> (rscaext.xml: its certificate hash and store name): HTTP.sys
# SSL bindings, never configuration; refused before any generic write.
$script:RscaBindingAttributePattern = '^certificate(Hash|StoreName)$'

function ConvertFrom-ConfigValue {
    # The typed value MWA stores for a string as IIS writes it, by the attribute's schema type
    # (enum/flags by name, bool, numbers and timeSpan in the invariant culture). Error messages
    # never show the value (it may be a secret).
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [object] $Schema, [Parameter(Mandatory = $true)] [AllowEmptyString()] [string] $Text)
    $type = [string]$schema.Type
    $invariant = [System.Globalization.CultureInfo]::InvariantCulture
    if ($type -eq 'enum' -or $type -eq 'flags') {
        $number = [long]0
        foreach ($part in $Text.Split(',')) {
            $match = @($schema.GetEnumValues() | Where-Object -FilterScript { $_.Name -eq $part.Trim() })
            if ($match.Count -eq 0 -and ($type -eq 'enum' -or $part.Trim().Length -gt 0)) {
                throw ('"{0}" is {1}: expected {2}' -f $schema.Name, $type, [string]::Join(', ', [string[]]@($schema.GetEnumValues() | ForEach-Object -Process { $_.Name })))
            }
            foreach ($value in $match) { $number = $number -bor [long]$value.Value }
        }
        return [int]$number
    }
    try {
        switch ($type) {
            'bool' { if ($Text -ceq 'true' -or $Text -ceq 'false') { return $Text -ceq 'true' }; throw 'not a bool' }
            'uint' { return [uint32]::Parse($Text, [System.Globalization.NumberStyles]::None, $invariant) }
            'int' { return [int]::Parse($Text, [System.Globalization.NumberStyles]::AllowLeadingSign, $invariant) }
            'int64' { return [long]::Parse($Text, [System.Globalization.NumberStyles]::AllowLeadingSign, $invariant) }
            'timeSpan' { return [System.TimeSpan]::Parse($Text, $invariant) }
        }
    } catch {
        throw ('"{0}" is a {1}: the given value is not a valid {1}' -f $schema.Name, $type)
    }
    return $Text
}

function Set-ConfigAttributes {
    # Set each attribute of Values (a JSON object of strings) on an MWA element.
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [object] $Element, [AllowNull()] [object] $Values)
    foreach ($name in (Get-CallMemberNames -Object $Values)) {
        $text = $Values.PSObject.Properties[$name].Value
        if ($text -isnot [string]) { throw ('attribute "{0}": values are strings' -f $name) }
        if ([string]$Element.ElementTagName -eq 'binding' -and $name -match $script:RscaBindingAttributePattern) {
            throw ('"{0}" of a binding is an HTTP.sys SSL binding (RSCA runtime member), not configuration: use Set-IisSslBinding' -f $name)
        }
        # By name from the schema (ConfigurationElementSchema.AttributeSchemas), never a walk.
        $schema = $Element.Schema.AttributeSchemas[$name]
        if ($null -eq $schema) { throw ('<{0}> has no attribute "{1}" in the IIS schema' -f $Element.ElementTagName, $name) }
        $Element.SetAttributeValue($name, (ConvertFrom-ConfigValue -Schema $schema -Text $text))
    }
}

function Invoke-IisConfigEdit {
    # Apply one EDIT to the in-memory configuration (no commit).
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [object] $Configuration, [Parameter(Mandatory = $true)] [psobject] $Edit, [string] $Function = 'Set-IisConfig')
    $section = Get-CallValue -Call $Edit -Name 'section' -Type string -Required -Function $Function
    $location = Get-CallValue -Call $Edit -Name 'location' -Type string -Function $Function
    $steps = Get-CallValue -Call $Edit -Name 'path' -Type array -Function $Function
    $action = Get-CallValue -Call $Edit -Name 'action' -Type string -Default 'set' -Function $Function
    if ($action -cne 'set' -and $action -cne 'remove') { throw '"action" must be "set" or "remove"' }
    if ($null -eq $location) { $element = $Configuration.GetSection($section) } else { $element = $Configuration.GetSection($section, $location) }
    for ($index = 0; $index -lt $steps.Count; $index++) {
        $step = $steps[$index]
        $child = Get-CallValue -Call $step -Name 'child' -Type string -Function $Function
        if ($null -ne $child) {
            $element = $element.GetChildElement($child)
            continue
        }
        $tag = Get-CallValue -Call $step -Name 'item' -Type string -Required -Function $Function
        $key = Get-CallValue -Call $step -Name 'key' -Type object -Required -Function $Function
        $collection = $element.GetCollection()
        $item = $null
        foreach ($candidate in $collection) {
            if ([string]$candidate.ElementTagName -ne $tag) { continue }
            $same = $true
            foreach ($name in (Get-CallMemberNames -Object $key)) {
                $same = $same -and [string]::Equals([string]$candidate.GetAttributeValue($name), [string]$key.PSObject.Properties[$name].Value, [System.StringComparison]::OrdinalIgnoreCase)
            }
            if ($same) { $item = $candidate; break }
        }
        if ($action -eq 'remove' -and $null -eq $item) { return }  # removing an absent item is not an error
        if ($action -eq 'remove' -and $index -eq $steps.Count - 1) { [void]$collection.Remove($item); return }
        if ($null -eq $item) {
            $item = $collection.CreateElement($tag)
            Set-ConfigAttributes -Element $item -Values $key
            if ($tag -ceq 'site' -and $null -eq $key.PSObject.Properties['id']) {
                # A new site gets the largest site id + 1, as ServerManager.Sites.Add does.
                $ids = @($collection | ForEach-Object -Process { [long]$_.GetAttributeValue('id') }) + @([long]0)
                $item.SetAttributeValue('id', [uint32](($ids | Measure-Object -Maximum).Maximum + 1))
            }
            [void]$collection.Add($item)
        }
        $element = $item
    }
    if ($action -eq 'remove') { throw 'a remove edit needs a path whose last step is an item step' }
    Set-ConfigAttributes -Element $element -Values (Get-CallValue -Call $Edit -Name 'attributes' -Type object -Function $Function)
}

function Set-IisConfig {
    # -Json {"edits": [EDIT, ...]} -> {"committed": bool}: all edits with ONE CommitChanges(), or
    # none (an error names the edit's index; secret values never appear in it).
    [CmdletBinding()]
    param([Parameter(Mandatory = $true)] [AllowEmptyString()] [string] $Json)
    $function = 'Set-IisConfig'
    $call = ConvertFrom-CallJson -Json $Json -Function $function
    $edits = Get-CallValue -Call $call -Name 'edits' -Type array -Required -Function $function
    if ($edits.Count -eq 0) {
        Write-CallResult -InputObject ([ordered]@{ committed = $false })
        return
    }
    $manager = New-IisServerManager -Function $function
    try {
        $configuration = $manager.GetApplicationHostConfiguration()
        for ($index = 0; $index -lt $edits.Count; $index++) {
            try {
                if ($edits[$index] -isnot [System.Management.Automation.PSCustomObject]) { throw 'an edit must be a JSON object' }
                Invoke-IisConfigEdit -Configuration $configuration -Edit $edits[$index] -Function $function
            } catch {
                $section = $null
                if ($edits[$index] -is [System.Management.Automation.PSCustomObject]) { $section = Get-CallValue -Call $edits[$index] -Name 'section' }
                throw ('{0}: edit {1} ({2}) failed, nothing was changed: {3}' -f $function, $index, $section, $_.Exception.Message)
            }
        }
        try { $manager.CommitChanges() } catch { throw ('{0}: CommitChanges failed, nothing was changed: {1}' -f $function, $_.Exception.Message) }
    } finally {
        $manager.Dispose()
    }
    Write-CallResult -InputObject ([ordered]@{ committed = $true })
}
