import cProfile, pstats, sys, time, numpy as np, torch
sys.argv=["x","--glue-dir",__import__("os").environ["MAKD_GLUE_DIR"]]
from bench import gpu as g
args=g.parse_args(sys.argv[1:])
from makd.batching import encode, length_grouped_batches
from makd.models import build_student
from makd.tasks import get_task
from makd.runtime import autocast_dtype
from makd.train import make_optimizer, pad_multiple, train_step, training_targets
dev=torch.device("cuda"); cfg=g.train_config(args, loss="taylor")
data,_=g.load(args, 32*80, 1); logits,_=g.cached_logits(args,data); task=get_task("sst2")
model,tok=build_student(cfg.student,2,seed=0,tokenizer=cfg.student_tokenizer); model.to(dev).train()
enc=encode(tok,data,128); opt=make_optimizer(model,cfg); sc=torch.amp.GradScaler("cuda",enabled=False)
tg,te=training_targets(task,data.labels),torch.tensor(np.asarray(logits))
bs=length_grouped_batches(enc.lengths,32,np.random.default_rng(0))
kw=dict(device=dev,amp=autocast_dtype("auto",dev),pad_to_multiple_of=32)
for i in bs[:10]: train_step(model,enc,i,tg[i],te[i],cfg,opt,sc,**kw)
torch.cuda.synchronize(); t=time.perf_counter()
for i in bs[10:70]: train_step(model,enc,i,tg[i],te[i],cfg,opt,sc,**kw)
torch.cuda.synchronize(); print("60 steps eager", time.perf_counter()-t, "threads", torch.get_num_threads())
pr=cProfile.Profile(); pr.enable()
for i in bs[10:40]: train_step(model,enc,i,tg[i],te[i],cfg,opt,sc,**kw)
torch.cuda.synchronize(); pr.disable()
pstats.Stats(pr).sort_stats("tottime").print_stats(22)
torch.set_num_threads(1); torch.cuda.synchronize(); t=time.perf_counter()
for i in bs[10:70]: train_step(model,enc,i,tg[i],te[i],cfg,opt,sc,**kw)
torch.cuda.synchronize(); print("60 steps 1 thread", time.perf_counter()-t)
