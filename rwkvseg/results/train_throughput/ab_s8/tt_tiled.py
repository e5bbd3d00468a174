"""benchmarks/train_throughput.py with the Bi-WKV backward forced back to the tiled kernel (session 8 A/B: the chunked
backward's share of a training step). Arguments as train_throughput.py's."""
import runpy, sys
from rwkvseg.kernels import wkv_triton
wkv_triton.CHUNK_BWD_MIN_T = 1 << 40          # never chunked: the tiled backward, as before 5d1b6ff
sys.argv = ["train_throughput.py", *sys.argv[1:]]
runpy.run_path("train_throughput.py", run_name="__main__")
