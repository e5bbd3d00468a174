import importlib.util, sys, re, subprocess, os, tempfile
import triton
from triton.compiler import ASTSource
from triton.backends.compiler import GPUTarget
spec = importlib.util.spec_from_file_location("kt", sys.argv[1]); kt = importlib.util.module_from_spec(spec); spec.loader.exec_module(kt)
PTXAS = [p for p in [os.path.join(os.path.dirname(triton.__file__), "backends/nvidia/bin/ptxas")] if os.path.exists(p)]
ONE = ("skc", "svc", "syc", "sgc", "sdc")
DIV = ("w_ptr","u_ptr","k_ptr","v_ptr","y_ptr","g_ptr","dk_ptr","dv_ptr","dw_ptr","du_ptr","sums_ptr","carry_ptr","cnt_ptr",
       "qsums_ptr","qcarry_ptr","C","skb","skt","svb","svt","syb","syt","sgb","sgt","sdb","sdt")
def comp(name, fn, sig, consts, nw):
    names = list(sig)
    for n in ONE:
        if n in sig:
            sig[n] = "constexpr"; consts[(names.index(n),)] = 1
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in DIV if n in sig}
    src = ASTSource(fn=fn, signature=sig, constexprs=consts, attrs=attrs)
    ck = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=dict(num_warps=nw))
    lay = sorted(set(re.findall(r"(#\w+ = #ttg\.\w+<.*)", ck.asm["ttgir"])))
    regs = ""
    if PTXAS:
        with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
            f.write(ck.asm["ptx"])
        r = subprocess.run([PTXAS[0], "-v", "--gpu-name=sm_90a", f.name, "-o", "/dev/null"], capture_output=True, text=True)
        regs = " ".join(re.findall(r"Used \d+ registers|\d+ bytes spill stores", r.stderr))
    import hashlib
    body = "\n".join(l for l in ck.asm["ptx"].split("\t.section\t.debug")[0].splitlines()
                     if not l.lstrip().startswith(("//", ".loc", ".file", "$L__", "$Ltmp")) and "debug" not in l)
    print(name, regs, hashlib.sha1(body.encode()).hexdigest()[:10])
    for l in lay: print("   ", l)
for dt in sys.argv[2:]:
    P = f"*{dt}"
    c = dict(CT=64, R=4, BC=128, NCHP=16, NSTAGE=3, MASK_T=False, MASK_C=True)
    names = ["w_ptr","u_ptr","k_ptr","v_ptr","sums_ptr","carry_ptr","cnt_ptr","T","C","NCB","NCH","skb","skt","skc","svb","svt","svc"]
    types = ["*fp32","*fp32",P,P,"*fp32","*fp32","*i32"] + ["i32"]*10
    sig = dict(zip(names, types)); sig.update({k: "constexpr" for k in c}); comp(f"fwd_sums_{dt}", kt._wkv_fwd_sums_kernel, sig, {(list(sig).index(k),): v for k, v in c.items()}, 1)
    names = ["w_ptr","u_ptr","k_ptr","v_ptr","y_ptr","carry_ptr","T","C","NCB","NCH","skb","skt","skc","svb","svt","svc","syb","syt","syc"]
    types = ["*fp32","*fp32",P,P,P,"*fp32"] + ["i32"]*13
    sig = dict(zip(names, types)); sig.update({k: "constexpr" for k in c}); comp(f"fwd_chunk_{dt}", kt._wkv_fwd_chunk_kernel, sig, {(list(sig).index(k),): v for k, v in c.items()}, 1)
    names = ["w_ptr","u_ptr","k_ptr","v_ptr","g_ptr","carry_ptr","qsums_ptr","qcarry_ptr","cnt_ptr","T","C","NCB","NCH","skb","skt","skc","svb","svt","svc","sgb","sgt","sgc"]
    types = ["*fp32","*fp32",P,P,P,"*fp32","*fp32","*fp32","*i32"] + ["i32"]*13
    sig = dict(zip(names, types)); sig.update({k: "constexpr" for k in c}); comp(f"bwd_qsums_{dt}", kt._wkv_bwd_qsums_kernel, sig, {(list(sig).index(k),): v for k, v in c.items()}, 1)
    names = ["w_ptr","u_ptr","k_ptr","v_ptr","g_ptr","dk_ptr","dv_ptr","dw_ptr","du_ptr","carry_ptr","qcarry_ptr","T","C","NCB","NCH","skb","skt","skc","svb","svt","svc","sgb","sgt","sgc","sdb","sdt","sdc"]
    types = ["*fp32","*fp32",P,P,P,P,P,"*fp32","*fp32","*fp32","*fp32"] + ["i32"]*16
    c3 = dict(c, R=2)
    sig = dict(zip(names, types)); sig.update({k: "constexpr" for k in c3}); comp(f"bwd_chunk_{dt}", kt._wkv_bwd_chunk_kernel, sig, {(list(sig).index(k),): v for k, v in c3.items()}, 1)
    # single pass (T < 512), tile (TP, BC, nw) = (256, 16, 4)
    names = ["w_ptr","u_ptr","k_ptr","v_ptr","y_ptr","T","C","skb","skt","skc","svb","svt","svc","syb","syt","syc"]
    types = ["*fp32","*fp32",P,P,P] + ["i32"]*11
    cs_ = dict(TP=256, BC=16)
    sig = dict(zip(names, types)); sig.update({k: "constexpr" for k in cs_}); comp(f"single_{dt}", kt._wkv_fwd_single_kernel, sig, {(list(sig).index(k),): v for k, v in cs_.items()}, 4)
    # tiled forward, real work (wide decays or causal), tile (128, 16, 4)
    for causal in (False, True):
        names = ["w_ptr","u_ptr","k_ptr","v_ptr","y_ptr","sx_ptr","B","T","C","NT","skb","skt","skc","svb","svt","svc","syb","syt","syc"]
        types = ["*fp32","*fp32",P,P,P,"*fp32"] + ["i32"]*13
        c2 = dict(CAUSAL=causal, ALLOW_FAST=True, ALLOW_TIGHT=True, BT=128, BC=16, SKIP_BC=0)
        sig = dict(zip(names, types)); sig.update({k: "constexpr" for k in c2}); comp(f"tiled_fwd_c{int(causal)}_{dt}", kt._wkv_fwd_kernel, sig, {(list(sig).index(k),): v for k, v in c2.items()}, 4)
        names = ["w_ptr","u_ptr","k_ptr","v_ptr","g_ptr","dk_ptr","dv_ptr","dw_ptr","du_ptr","sx_ptr","px_ptr","qx_ptr","B","T","C","NT","skb","skt","skc","svb","svt","svc","sgb","sgt","sgc","sdb","sdt","sdc"]
        types = ["*fp32","*fp32",P,P,P,P,P,"*fp32","*fp32","*fp32","*fp32","*fp32"] + ["i32"]*16
        sig = dict(zip(names, types)); sig.update({k: "constexpr" for k in c2}); comp(f"tiled_bwd_c{int(causal)}_{dt}", kt._wkv_bwd_kernel, sig, {(list(sig).index(k),): v for k, v in c2.items()}, 4)
