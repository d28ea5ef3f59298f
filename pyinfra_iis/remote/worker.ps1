# pyinfra-iis worker, protocol 2 (pyinfra_iis/protocol.py, "Worker protocol"). Started once per host with
# -EncodedCommand; the controller puts "$ModuleSha256 = '<hex>'" before this text.
# Docs: https://learn.microsoft.com/powershell/module/microsoft.powershell.core/about/about_language_modes
if ($ExecutionContext.SessionState.LanguageMode -ne 'FullLanguage') {
    Write-Output ('##pyinfra-iis-fatal## language mode ' + $ExecutionContext.SessionState.LanguageMode)
    exit 3
}
Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'; $ProgressPreference = 'SilentlyContinue'
$utf8 = New-Object System.Text.UTF8Encoding $false
$lastId = 0; $lastReply = $null; $functions = @{}
$moduleDir = Join-Path $env:ProgramData 'pyinfra-iis\module'
# Docs: https://learn.microsoft.com/dotnet/api/system.console.openstandardinput
$stdin = New-Object System.IO.StreamReader -ArgumentList ([Console]::OpenStandardInput()), $utf8
$stdout = New-Object System.IO.StreamWriter -ArgumentList ([Console]::OpenStandardOutput()), $utf8
# Standard handles then point at NUL: native programs a step starts cannot eat frames. P/Invoke without compiling:
# Docs: https://learn.microsoft.com/dotnet/api/system.reflection.emit.typebuilder.definepinvokemethod
# Docs: https://learn.microsoft.com/windows/console/setstdhandle https://learn.microsoft.com/windows/win32/api/fileapi/nf-fileapi-createfilew
# Docs: https://learn.microsoft.com/windows/win32/api/handleapi/nf-handleapi-sethandleinformation (STARTUPINFO std handles must be inheritable)
# Docs: https://learn.microsoft.com/dotnet/api/system.appdomain.definedynamicassembly
try {
    $assembly = [AppDomain]::CurrentDomain.DefineDynamicAssembly((New-Object Reflection.AssemblyName 'PyinfraIisNative'), 'Run')
    $type = $assembly.DefineDynamicModule('PyinfraIisNative').DefineType('PyinfraIisNative.Kernel32', 'Public,Class')
    foreach ($m in @(@('SetStdHandle', [bool], [Type[]]@([int], [IntPtr])), @('SetHandleInformation', [bool], [Type[]]@([IntPtr], [int], [int])),
            @('CreateFileW', [IntPtr], [Type[]]@([string], [int], [int], [IntPtr], [int], [int], [IntPtr])))) {
        $method = $type.DefinePInvokeMethod($m[0], 'kernel32.dll', [Reflection.MethodAttributes]'Public,Static,PinvokeImpl',
            [Reflection.CallingConventions]::Standard, $m[1], $m[2], [Runtime.InteropServices.CallingConvention]::Winapi, [Runtime.InteropServices.CharSet]::Unicode)
        $method.SetImplementationFlags([Reflection.MethodImplAttributes]::PreserveSig)
    }
    $native = $type.CreateType()
    $nul = $native::CreateFileW('NUL', 0xC0000000, 3, [IntPtr]::Zero, 3, 0, [IntPtr]::Zero)
    if ($nul -eq [IntPtr](-1) -or -not $native::SetHandleInformation($nul, 1, 1)) { throw 'cannot open NUL as an inheritable handle' }
    foreach ($std in -10, -11, -12) { [void]$native::SetStdHandle($std, $nul) }
} catch {
    [Console]::Error.WriteLine('pyinfra-iis: standard handles not redirected to NUL: ' + $_.Exception.Message)
}
# Docs: https://learn.microsoft.com/dotnet/api/system.management.automation.runspaces.runspacefactory.createrunspace
$runspace = [runspacefactory]::CreateRunspace(); $runspace.Open(); $home0 = $runspace.SessionStateProxy.Path.CurrentLocation.Path
$proxy = $runspace.SessionStateProxy; $proxy.SetVariable('ErrorActionPreference', 'Stop')
function Send-Reply([int]$Id, [int]$Code, [string]$Out, [string]$Err) {
    $json = ConvertTo-Json -Compress -Depth 2 -InputObject @{ id = $Id; rc = $Code; stdout = $Out; stderr = $Err }
    $line = "`r`n" + '##pyinfra-iis-reply## ' + [Convert]::ToBase64String($utf8.GetBytes($json))
    $stdout.WriteLine($line); $stdout.Flush()
    if ($Id -gt 0) { $script:lastId = $Id; $script:lastReply = $line }
}
function Get-WorkerSha256([byte[]]$Bytes) {
    $sha = [Security.Cryptography.SHA256]::Create()
    try { return -join ($sha.ComputeHash($Bytes) | ForEach-Object { $_.ToString('x2') }) } finally { $sha.Dispose() }
}
# Docs: https://learn.microsoft.com/dotnet/api/system.io.directory.createdirectory (DirectorySecurity overload)
# Docs: https://learn.microsoft.com/dotnet/api/system.security.accesscontrol.objectsecurity.setsecuritydescriptorsddlform
# Docs: https://learn.microsoft.com/dotnet/api/system.io.directory.getaccesscontrol
function Test-ModuleFolder([bool]$Create) {
    $acl = New-Object System.Security.AccessControl.DirectorySecurity
    $acl.SetSecurityDescriptorSddlForm('O:BAG:SYD:PAI(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)')
    if ($Create -and -not [IO.Directory]::Exists($moduleDir)) { [void][IO.Directory]::CreateDirectory($moduleDir, $acl) }
    if (-not [IO.Directory]::Exists($moduleDir)) { return $false }
    $acl = [IO.Directory]::GetAccessControl($moduleDir)
    $admins = 'S-1-5-18', 'S-1-5-32-544'
    $others = @($acl.GetAccessRules($true, $true, [Security.Principal.SecurityIdentifier]) | Where-Object { $admins -notcontains $_.IdentityReference.Value })
    return ($admins -contains $acl.GetOwner([Security.Principal.SecurityIdentifier]).Value) -and $acl.AreAccessRulesProtected -and $others.Count -eq 0
}
# Docs: https://learn.microsoft.com/powershell/module/microsoft.powershell.core/new-module
function Import-WorkerModule([string]$Source) {
    $ps = [powershell]::Create(); $ps.Runspace = $runspace
    [void]$ps.AddScript('param($s) New-Module -Name PyinfraIis -ScriptBlock ([scriptblock]::Create($s)) | Import-Module -Global -PassThru').AddArgument($Source)
    try { $module = $ps.Invoke(); $errors = @($ps.Streams.Error) } finally { $ps.Dispose() }
    if ($errors.Count -gt 0 -or $module.Count -ne 1) { throw ('module PyinfraIis did not load: ' + ($errors | Out-String).Trim()) }
    foreach ($name in $module[0].ExportedFunctions.Keys) { $script:functions[$name] = $true }
}
function Invoke-Step($Frame) {
    $ps = [powershell]::Create(); $ps.Runspace = $runspace
    # Each step runs in a local scope (its own variables go with it); global preferences, exit code and location are reset.
    # A script step gets powershell.exe's 'Continue' (5.1 turns each stderr line of a native program into an error
    # record, which 'Stop' would make fatal; PowerShell #3996); a module call keeps 'Stop'.
    $preference = 'Stop'
    if ($Frame.op -ne 'call') { $preference = 'Continue' }
    foreach ($pair in @{ ErrorActionPreference = $preference; ProgressPreference = 'SilentlyContinue'; LASTEXITCODE = 0 }.GetEnumerator()) { $proxy.SetVariable($pair.Key, $pair.Value) }
    $proxy.Path.SetLocation($home0) | Out-Null
    $err = New-Object System.Text.StringBuilder
    if ($Frame.op -eq 'call') {
        # A call is data: the function (checked to be one of the module's) gets the JSON as a parameter value.
        $unknown = 'The term ' + [string]$Frame.name + ' is not recognized as the name of a cmdlet, function, script file, or operable program.'
        if (-not $functions.ContainsKey([string]$Frame.name)) { $ps.Dispose(); Send-Reply $Frame.id 1 '' $unknown; return }
        [void]$ps.AddCommand('PyinfraIis\' + $Frame.name).AddParameter('Json', [string]$Frame.json)
    } else {
        [void]$ps.AddScript([string]$Frame.script, $true)
    }
    # Docs: https://learn.microsoft.com/dotnet/api/system.management.automation.psinvocationsettings.exposeflowcontrolexceptions
    # Docs: https://learn.microsoft.com/dotnet/api/system.management.automation.powershell.invoke (IEnumerable, IList<T>, PSInvocationSettings)
    $settings = New-Object System.Management.Automation.PSInvocationSettings; $settings.ExposeFlowControlExceptions = $true
    $output = New-Object 'System.Collections.Generic.List[psobject]'; $code = 0; $exited = $false; $exitType = [System.Management.Automation.ExitException]
    try { $ps.Invoke(@(), $output, $settings) } catch {
        $inner = $_.Exception
        while ($null -ne $inner.InnerException -and $inner -isnot $exitType) { $inner = $inner.InnerException }
        if ($inner -is $exitType) { $code = [int]$inner.Argument; $exited = $true } else { [void]$err.AppendLine($inner.Message); $code = 1 }
    }
    $out = [string]::Empty
    if ($output.Count -gt 0) { $out = $output | Out-String -Width 4096 }
    foreach ($record in $ps.Streams.Information) { $out += [string]$record.MessageData + "`r`n" }
    foreach ($record in $ps.Streams.Warning) { [void]$err.AppendLine('WARNING: ' + $record.Message) }
    $hard = 0
    foreach ($record in $ps.Streams.Error) {
        if ($record.FullyQualifiedErrorId -like 'NativeCommandError*') { [void]$err.AppendLine($record.Exception.Message) }
        else { $hard++; [void]$err.AppendLine(($record | Out-String).TrimEnd()) }
    }
    # Not $ps.HadErrors (also true for caught errors and native stderr; PowerShell #4613, #5425).
    if ($hard -gt 0 -and $code -eq 0) { $code = 1 }
    $last = $proxy.GetVariable('LASTEXITCODE')
    if (-not $exited -and $code -eq 0 -and $last -is [int] -and $last -ne 0) { $code = $last }
    $ps.Dispose(); Send-Reply $Frame.id $code $out $err.ToString()
}
# Hello: the module is loaded from the administrators-only cache when its SHA-256 matches, else the controller sends it.
$state = 'missing'
try {
    $path = Join-Path $moduleDir ($ModuleSha256 + '.ps1')
    if ((Test-ModuleFolder $false) -and [IO.File]::Exists($path)) {
        $bytes = [IO.File]::ReadAllBytes($path)
        if ((Get-WorkerSha256 $bytes) -eq $ModuleSha256) { Import-WorkerModule $utf8.GetString($bytes); $state = 'loaded' }
    }
} catch { $state = 'missing' }
Send-Reply -Id 0 -Code 0 -Out (ConvertTo-Json -Compress -Depth 2 -InputObject @{ protocol = 2; module = $state }) -Err ''
while ($true) {
    $line = $stdin.ReadLine()
    if ($null -eq $line) { break }
    if ($line.Length -eq 0) { continue }
    if ($line[0] -eq '+') {
        # Upload data: handed to the module, which keeps any error for Complete-FileUpload.
        $ps = [powershell]::Create(); $ps.Runspace = $runspace
        [void]$ps.AddCommand('PyinfraIis\Add-FileUploadChunk').AddParameter('Base64', $line.Substring(1))
        try { [void]$ps.Invoke() } catch { }
        $ps.Dispose(); continue
    }
    try { $frame = $utf8.GetString([Convert]::FromBase64String($line)) | ConvertFrom-Json } catch {
        Send-Reply -1 1 '' ('invalid frame: ' + $_.Exception.Message); continue
    }
    if ($frame.id -eq $lastId -and $null -ne $lastReply) {
        # The controller re-sent a step after a dropped connection: the step already ran, its reply is sent again.
        $stdout.WriteLine($lastReply); $stdout.Flush()
    } elseif ($frame.op -eq 'module') {
        $bytes = $utf8.GetBytes([string]$frame.source)
        if ((Get-WorkerSha256 $bytes) -ne $ModuleSha256) { Send-Reply $frame.id 1 '' 'module SHA-256 mismatch'; continue }
        $note = ''
        try { if (Test-ModuleFolder $true) { [IO.File]::WriteAllBytes($path, $bytes) } else { $note = 'module cache folder not trusted: ' + $moduleDir } } catch { $note = $_.Exception.Message }
        try { Import-WorkerModule ([string]$frame.source); Send-Reply $frame.id 0 '' $note } catch { Send-Reply $frame.id 1 '' $_.Exception.Message }
    } else {
        try { Invoke-Step $frame } catch { Send-Reply $frame.id 1 '' ('worker: ' + $_.Exception.Message) }
    }
}
$runspace.Close(); exit 0
