#!/usr/bin/env python3
"""rewrite.py — cuda-emu's source rewriter: turns a .cu (or a header it
includes) into C++ that g++ compiles against the emulated headers.

  k<<<grid, block[, shmem[, stream]]>>>(args)
      -> emu_launcher<decltype(k)>(emu_cfg(grid, block, ...), k, "k", __FILE__, __LINE__)(args)
  __shared__ T x[..];            (in a function)
      -> static T x[..]; EMU_SHARED(x);     (poisoned by the first thread of each block)
  extern __shared__ T x[];
      -> T *x = (T *)emu_dyn_shared();

Comments and string literals are left alone; line numbers are kept (a
#line directive names the original file), so diagnostics and __FILE__ /
__LINE__ point at the original source.

usage: rewrite.py IN OUT [--display-name NAME]
"""
import re
import sys


def mask(src):
    """src with comments, string and char literals blanked (same length and
    newlines), so that searches see only code."""
    out = list(src)
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith('//', i):
            j = src.find('\n', i)
            j = n if j < 0 else j
            for k in range(i, j):
                out[k] = ' '
            i = j
        elif src.startswith('/*', i):
            j = src.find('*/', i + 2)
            j = n if j < 0 else j + 2
            for k in range(i, j):
                if out[k] != '\n':
                    out[k] = ' '
            i = j
        elif c in '"\'':
            j = i + 1
            while j < n and src[j] != c:
                j += 2 if src[j] == '\\' else 1
            for k in range(i + 1, min(j, n)):
                if out[k] != '\n':
                    out[k] = ' '
            i = j + 1
        else:
            i += 1
    return ''.join(out)


def brace_depth_at(m, pos):
    return m.count('{', 0, pos) - m.count('}', 0, pos)


class Edit:
    def __init__(self):
        self.edits = []  # (start, end, text)

    def add(self, a, b, t):
        self.edits.append((a, b, t))

    def apply(self, src):
        out, last = [], 0
        for a, b, t in sorted(self.edits):
            if a < last:
                raise SystemExit('rewrite.py: overlapping edits at offset %d' % a)
            out.append(src[last:a])
            out.append(t)
            last = b
        out.append(src[last:])
        return ''.join(out)


def launches(src, m, ed, warn):
    for mt in re.finditer(r'<<<', m):
        s = mt.start()
        # the callee: an identifier (maybe qualified, maybe with template args)
        j = s
        while j > 0 and m[j - 1] in ' \t':
            j -= 1
        e = j
        if j > 0 and m[j - 1] == '>':  # template arguments
            depth = 0
            while j > 0:
                j -= 1
                if m[j] == '>':
                    depth += 1
                elif m[j] == '<':
                    depth -= 1
                    if depth == 0:
                        break
        while j > 0 and (m[j - 1].isalnum() or m[j - 1] in '_:'):
            j -= 1
        callee = src[j:e].strip()
        if not re.match(r'^[A-Za-z_][\w:]*(<.*>)?$', callee, re.S):
            warn('cannot parse the kernel before <<< at offset %d: %r' % (s, callee))
            continue
        # the configuration, up to >>> at bracket depth 0
        k, depth = s + 3, 0
        while k < len(m):
            ch = m[k]
            if ch in '([{':
                depth += 1
            elif ch in ')]}':
                depth -= 1
            elif depth == 0 and m.startswith('>>>', k):
                break
            k += 1
        else:
            warn('unterminated <<< at offset %d' % s)
            continue
        cfg = src[s + 3:k]
        name = ' '.join(callee.split())
        ed.add(j, k + 3, 'emu_launcher<decltype(%s)>(emu_cfg(%s), %s, "%s", __FILE__, __LINE__)' %
               (callee, cfg, callee, name.replace('"', '\\"')))


def declarator_names(decl):
    """Names declared by 'T a[3], *b, c' (decl without the storage words)."""
    parts, depth, cur = [], 0, ''
    for ch in decl:
        if ch in '([{':
            depth += 1
        elif ch in ')]}':
            depth -= 1
        if ch == ',' and depth == 0:
            parts.append(cur)
            cur = ''
        else:
            cur += ch
    parts.append(cur)
    names = []
    for i, p in enumerate(parts):
        p = re.sub(r'=.*$', '', p, flags=re.S)       # initialiser
        p = re.sub(r'\[.*$', '', p, flags=re.S)      # array bounds
        p = re.sub(r'__align__\s*\([^)]*\)', '', p)
        p = re.sub(r'__attribute__\s*\(\(.*?\)\)', '', p)
        ids = re.findall(r'[A-Za-z_]\w*', p)
        if ids:
            names.append(ids[-1])
    return names


def shared(src, m, ed, warn):
    for mt in re.finditer(r'\b__shared__\b', m):
        s, e = mt.start(), mt.end()
        # the statement around it
        a = max(m.rfind(';', 0, s), m.rfind('{', 0, s), m.rfind('}', 0, s)) + 1
        b = m.find(';', e)
        if b < 0:
            warn('__shared__ without a ; at offset %d' % s)
            continue
        stmt = m[a:b]
        in_function = brace_depth_at(m, s) > 0
        ext = re.match(r'\s*extern\s+__shared__\s+(.*?)\s*([A-Za-z_]\w*)\s*\[\s*\]\s*$', stmt, re.S)
        if ext:
            typ = re.sub(r'__align__\s*\([^)]*\)', '', ext.group(1)).strip()
            typ = re.sub(r'\s+', ' ', typ)
            ed.add(a, b, ' %s *%s = (%s *)emu_dyn_shared()' % (typ, ext.group(2), typ))
            continue
        if re.match(r'\s*extern\b', stmt):
            warn('extern __shared__ of a sized array at offset %d: not emulated' % s)
            continue
        ed.add(s, e, 'static')
        if not in_function:
            continue  # a file-scope __shared__: one object, not poisoned per block
        decl = src[a:b].replace('__shared__', '').replace('static', '')
        names = declarator_names(decl)
        if not names:
            warn('cannot find the name declared by %r' % src[a:b])
            continue
        ed.add(b + 1, b + 1, ' ' + ' '.join('EMU_SHARED(%s);' % nm for nm in names))


def main():
    args = sys.argv[1:]
    if len(args) < 2:
        raise SystemExit(__doc__)
    inp, outp = args[0], args[1]
    name = inp
    if '--display-name' in args:
        name = args[args.index('--display-name') + 1]
    src = open(inp, encoding='utf-8').read()
    m = mask(src)
    ed = Edit()
    warnings = []

    def warn(msg):
        warnings.append(msg)
        sys.stderr.write('%s: rewrite.py: warning: %s\n' % (name, msg))

    launches(src, m, ed, warn)
    shared(src, m, ed, warn)
    out = ed.apply(src)
    assert out.count('\n') == src.count('\n'), 'line count changed'
    with open(outp, 'w', encoding='utf-8') as f:
        f.write('#line 1 "%s"\n' % name)
        f.write(out)


if __name__ == '__main__':
    main()
