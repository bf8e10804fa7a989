#!/usr/bin/env python3
"""Generates directives.rs: the directive table gwdoctor checks nginx configurations against.

Sources (each a package of a public registry, fetched with its ordinary client):
  - nginx 1.22.1 source (`apt-get source nginx`, Debian bookworm): every `ngx_command_t` of every
    module, with its exact context and argument mask;
  - lua-nginx-module 0.10.23, headers-more 0.34, echo 0.63 (Debian's libnginx-mod-http-* sources):
    the same, for the third-party modules most often met;
  - the NGINX directive reference (`npm pack @nginx/reference-lib`, generated from nginx.org's
    documentation): names and contexts of directives newer than 1.22 and of NGINX Plus; their
    argument counts are not machine-readable there, so only contexts and block-ness are checked.

Usage: gen_directives.py NGINX_SRC LUA_SRC HEADERS_MORE_SRC ECHO_SRC REFERENCE_JSON > directives.rs
(REFERENCE_JSON: `[[module, name, contexts, isBlock, syntax], ...]` from reference-lib's getDirectives()).
"""
import glob, json, re, sys

ARG = {
    'NGX_CONF_NOARGS': 0x1, 'NGX_CONF_TAKE1': 0x2, 'NGX_CONF_TAKE2': 0x4, 'NGX_CONF_TAKE3': 0x8,
    'NGX_CONF_TAKE4': 0x10, 'NGX_CONF_TAKE5': 0x20, 'NGX_CONF_TAKE6': 0x40, 'NGX_CONF_TAKE7': 0x80,
    'NGX_CONF_BLOCK': 0x100, 'NGX_CONF_FLAG': 0x200, 'NGX_CONF_ANY': 0x400, 'NGX_CONF_1MORE': 0x800,
    'NGX_CONF_2MORE': 0x1000,
}
ARG['NGX_CONF_TAKE12'] = ARG['NGX_CONF_TAKE1'] | ARG['NGX_CONF_TAKE2']
ARG['NGX_CONF_TAKE13'] = ARG['NGX_CONF_TAKE1'] | ARG['NGX_CONF_TAKE3']
ARG['NGX_CONF_TAKE23'] = ARG['NGX_CONF_TAKE2'] | ARG['NGX_CONF_TAKE3']
ARG['NGX_CONF_TAKE34'] = ARG['NGX_CONF_TAKE3'] | ARG['NGX_CONF_TAKE4']
ARG['NGX_CONF_TAKE123'] = ARG['NGX_CONF_TAKE12'] | ARG['NGX_CONF_TAKE3']
ARG['NGX_CONF_TAKE1234'] = ARG['NGX_CONF_TAKE123'] | ARG['NGX_CONF_TAKE4']
CTX = {
    'NGX_DIRECT_CONF': 0, 'NGX_MAIN_CONF': 0x40000, 'NGX_EVENT_CONF': 0x80000,
    'NGX_MAIL_MAIN_CONF': 0x100000, 'NGX_MAIL_SRV_CONF': 0x200000,
    'NGX_STREAM_MAIN_CONF': 0x400000, 'NGX_STREAM_SRV_CONF': 0x800000, 'NGX_STREAM_UPS_CONF': 0x1000000,
    'NGX_HTTP_MAIN_CONF': 0x2000000, 'NGX_HTTP_SRV_CONF': 0x4000000, 'NGX_HTTP_LOC_CONF': 0x8000000,
    'NGX_HTTP_UPS_CONF': 0x10000000, 'NGX_HTTP_SIF_CONF': 0x20000000, 'NGX_HTTP_LIF_CONF': 0x40000000,
    'NGX_HTTP_LMT_CONF': 0x80000000,
}
ALL_CTX = 0
for v in CTX.values():
    ALL_CTX |= v
CTX['NGX_ANY_CONF'] = ALL_CTX

COMMAND = re.compile(r'\{\s*ngx_string\("([^"]+)"\),\s*([A-Z0-9_|\s]+?),\s*\n', re.S)


def from_source(root, table, origin):
    for path in sorted(glob.glob(root + '/**/*.c', recursive=True)):
        source = open(path, encoding='latin1').read()
        # Only the command arrays: `static ngx_command_t ..._commands[] = { ... ngx_null_command };`
        arrays = re.findall(r'ngx_command_t\s+\w+\[\]\s*=\s*\{(.*?)ngx_null_command', source, re.S)
        for name, flags in (c for array in arrays for c in COMMAND.findall(array)):
            mask = 0
            for flag in (f.strip() for f in flags.split('|')):
                if flag in ARG:
                    mask |= ARG[flag]
                elif flag in CTX:
                    mask |= CTX[flag]
                else:
                    sys.exit('%s: %s: unknown flag %s' % (path, name, flag))
            entry = table.setdefault(name, {'origin': origin, 'masks': []})
            if mask not in entry['masks']:
                entry['masks'].append(mask)


def from_reference(path, table):
    for module, name, contexts, is_block, _syntax in json.load(open(path)):
        if name in table and table[name]['origin'] != 'Docs':
            continue
        family = 'stream' if module.startswith('ngx_stream_') else 'mail' if module.startswith('ngx_mail_') else 'http'
        mask = ARG['NGX_CONF_ANY'] | (ARG['NGX_CONF_BLOCK'] if is_block else 0)
        for c in contexts:
            mask |= {
                'main': CTX['NGX_MAIN_CONF'], 'events': CTX['NGX_EVENT_CONF'],
                'http': CTX['NGX_HTTP_MAIN_CONF'], 'location': CTX['NGX_HTTP_LOC_CONF'],
                'if in location': CTX['NGX_HTTP_LIF_CONF'], 'limit_except': CTX['NGX_HTTP_LMT_CONF'],
                'if': CTX['NGX_HTTP_SIF_CONF'] | CTX['NGX_HTTP_LIF_CONF'],
                'stream': CTX['NGX_STREAM_MAIN_CONF'], 'mail': CTX['NGX_MAIL_MAIN_CONF'],
                'server': {'http': CTX['NGX_HTTP_SRV_CONF'], 'stream': CTX['NGX_STREAM_SRV_CONF'],
                           'mail': CTX['NGX_MAIL_SRV_CONF']}[family],
                'upstream': {'http': CTX['NGX_HTTP_UPS_CONF'], 'stream': CTX['NGX_STREAM_UPS_CONF'],
                             'mail': 0}[family],
            }.get(c, 0)
        entry = table.setdefault(name, {'origin': 'Docs', 'masks': []})
        if entry['origin'] == 'Docs' and mask not in entry['masks']:
            entry['masks'].append(mask)


def main():
    nginx, lua, more, echo, reference = sys.argv[1:6]
    table = {}
    from_source(nginx + '/src', table, 'Nginx')
    from_reference(reference, table)
    from_source(lua + '/src', table, 'Lua')
    from_source(more + '/src', table, 'HeadersMore')
    from_source(echo + '/src', table, 'Echo')
    out = sys.stdout
    out.write('// @generated by gen_directives.py from nginx 1.22.1, lua-nginx-module 0.10.23,\n'
              '// headers-more 0.34, echo 0.63 and @nginx/reference-lib 1.1.41. Do not edit by hand.\n\n')
    out.write('pub(super) static TABLE: &[(&str, Origin, &[u32])] = &[\n')
    for name in sorted(table):
        e = table[name]
        masks = ', '.join('0x%08x' % m for m in e['masks'])
        out.write('    (%s, Origin::%s, &[%s]),\n' % (json.dumps(name), e['origin'], masks))
    out.write('];\n')


main()
