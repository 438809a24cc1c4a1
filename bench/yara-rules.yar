// bench:yara's rule set: the kind of rules a threat report carries — literal
// strings (ASCII, wide, nocase), hex with jumps and wildcards, regexes, and
// conditions on counts, offsets and file size. Written for this benchmark.

rule webshell_php_eval : webshell {
  meta: description = "PHP that evaluates decoded input"
  strings:
    $a = "eval(base64_decode(" nocase
    $b = "eval(gzinflate(" nocase
    $c = /eval\s*\(\s*\$_(POST|GET|REQUEST|COOKIE)\[/
  condition: any of them
}

rule webshell_jsp_runtime : webshell {
  strings:
    $a = "Runtime.getRuntime().exec(request.getParameter"
    $b = "<%@ page import=\"java.io.*\" %>"
  condition: $a or ($b and filesize < 20KB)
}

rule miner_stratum : miner {
  strings:
    $s1 = "stratum+tcp://" ascii wide
    $s2 = "stratum+ssl://" ascii wide
    $x = "xmrig" nocase
  condition: any of ($s*) or #x > 3
}

rule reverse_shell_bash : backdoor {
  strings:
    $a = /bash -i >& \/dev\/tcp\/[0-9.]{7,15}\/[0-9]{2,5}/
    $b = "0<&196;exec 196<>/dev/tcp/"
  condition: any of them
}

rule python_pty_spawn : backdoor {
  strings:
    $a = "import pty;pty.spawn(" 
    $b = /socket\.socket\(socket\.AF_INET,\s*socket\.SOCK_STREAM\)/
  condition: all of them
}

rule elf_upx_packed : packer {
  strings:
    $upx0 = "UPX0"
    $upx1 = "UPX1"
    $ver = /\$Info: This file is packed with the UPX executable packer/
  condition: uint32(0) == 0x464c457f and (2 of them)
}

rule pe_in_non_pe : dropper {
  strings:
    $mz = { 4D 5A 90 00 03 00 00 00 }
    $pe = "This program cannot be run in DOS mode"
  condition: $mz at 0 and $pe in (0..512)
}

rule shellcode_x64_syscall_execve {
  strings:
    $a = { 48 31 F6 56 48 BF 2F 62 69 6E 2F 2F 73 68 57 54 5F 6A 3B 58 99 0F 05 }
    $b = { 48 31 D2 48 BB 2F 2F 62 69 6E 2F 73 68 [0-8] 53 48 89 E7 B0 3B 0F 05 }
  condition: any of them
}

rule cobalt_strike_beacon_config {
  strings:
    $cfg = { 00 01 00 01 00 02 ?? ?? 00 02 00 01 00 02 ?? ?? 00 03 }
    $xor = { 69 68 69 68 69 6B ?? ?? 69 6B 69 68 69 6B ?? ?? 69 6A }
  condition: any of them
}

rule ssh_authorized_key_forced_command {
  strings:
    $a = /command="[^"]{1,200}" ssh-(rsa|ed25519) AAAA/
  condition: $a
}

rule aws_access_key_in_text {
  strings:
    $k = /AKIA[0-9A-Z]{16}/
    $s = /aws_secret_access_key\s*=\s*[A-Za-z0-9\/+]{40}/
  condition: $k and $s
}

rule private_key_file {
  strings:
    $a = "-----BEGIN RSA PRIVATE KEY-----"
    $b = "-----BEGIN OPENSSH PRIVATE KEY-----"
    $c = "-----BEGIN EC PRIVATE KEY-----"
  condition: any of them and filesize < 16KB
}

rule cron_download_pipe_shell {
  strings:
    $a = /(curl|wget)[^|\n]{1,200}\|\s*(ba)?sh/
  condition: $a
}

rule ld_preload_persistence {
  strings:
    $a = "/etc/ld.so.preload"
    $b = "LD_PRELOAD="
  condition: all of them
}

rule suspicious_base64_elf {
  strings:
    $a = "f0VMRgIBAQ"
  condition: $a
}

rule php_obfuscated_chr_chain {
  strings:
    $a = /chr\(\d{2,3}\)\s*\.\s*chr\(\d{2,3}\)\s*\.\s*chr\(\d{2,3}\)\s*\.\s*chr\(\d{2,3}\)/
  condition: $a
}

rule powershell_encoded_command {
  strings:
    $a = /powershell(\.exe)?\s+-(e|enc|encodedcommand)\s+[A-Za-z0-9+\/=]{40,}/ nocase
  condition: $a
}

rule tor_onion_address {
  strings:
    $a = /[a-z2-7]{56}\.onion/
  condition: $a
}

rule mimikatz_strings : credtheft {
  strings:
    $a = "sekurlsa::logonpasswords" ascii wide nocase
    $b = "gentilkiwi" ascii wide
  condition: any of them
}

rule linux_rootkit_hide_strings : rootkit {
  strings:
    $a = "hide_pid" fullword
    $b = "hidden_tcp4_ports"
    $c = "/proc/%d/cmdline"
  condition: 2 of them
}

rule gpl_license_text : benign {
  strings:
    $a = "GNU GENERAL PUBLIC LICENSE"
    $b = "Version 3, 29 June 2007"
  condition: $a and $b
}

rule mit_license_text : benign {
  strings:
    $a = "Permission is hereby granted, free of charge"
  condition: $a
}

rule many_ipv4_addresses {
  strings:
    $ip = /\b(25[0-5]|2[0-4][0-9]|1?[0-9]{1,2})(\.(25[0-5]|2[0-4][0-9]|1?[0-9]{1,2})){3}\b/
  condition: #ip > 50
}

rule elf_static_go_binary {
  strings:
    $go = "Go build ID:"
    $rt = "runtime.gopanic"
  condition: uint32(0) == 0x464c457f and all of them
}

rule shared_object_with_init_hook {
  strings:
    $a = "__attribute__((constructor))"
    $b = "dlsym(RTLD_NEXT"
  condition: all of them
}

rule ransom_note_words {
  strings:
    $a = "your files have been encrypted" nocase
    $b = "bitcoin" nocase
  condition: all of them and filesize < 64KB
}
