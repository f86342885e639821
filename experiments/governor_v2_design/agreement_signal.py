"""The step-agreement signal the governor reads, measured on the stress model.

Pretrains the stress_cpu model (1,500 steps, LR 3e-3, cosine), then
trains five copies with plain AdamW at LRs 3e-4 ... 3e-2 (30 warmup steps, constant) and
prints, per 30-step window, the mean loss and the mean and spread of the cosine between
each step's gradient and Adam's momentum before that step.

    python experiments/governor_v2_design/agreement_signal.py
"""
import jax, jax.numpy as jnp, numpy as np, optax
from flax import nnx
from lbw_jax.train.configs.stress_cpu import get_config
from lbw_jax.train.models import make_mesh
from lbw_jax.train.data.build import build_data
from lbw_jax.train.trainer import build_model
from lbw_jax.train.step import make_loss
from lbw_jax.train.stress.engine.sweep import stack
from lbw_jax.train.optim import schedule_shape
from lbw_jax.train.data import dataset as data_lib
cfg = get_config()  # the stress suite's model and data
data = build_data(cfg)
model = build_model(cfg, data.tokenizer.vocab_size, make_mesh(1,1,1,devices=jax.devices()[:1]))
g, params, frozen = nnx.split(model, nnx.Param, ...)
loss_fn = make_loss(g)
gf = jax.value_and_grad(loss_fn)
# pretrain quickly like the suite
shape_pre = schedule_shape("cosine", 1500, 50)
shape = schedule_shape(cfg.optimizer.schedule, 300, 30)
def mk(lr): return optax.adamw(lr, b1=0.9, b2=0.95, weight_decay=0.01)
@jax.jit
def pre_step(p, s, tok, step):
    l, gr = gf(p, frozen, tok)
    u, s = mk(3e-3*shape_pre(step)).update(gr, s, p)
    return optax.apply_updates(p, u), s, l
order = data_lib.BatchOrder(data.train.windows, 8, 0)
s = mk(1.0).init(params)
for i in range(1500):
    params, s, l = pre_step(params, s, order.batch(i), i)
print("pretrained loss", float(l))
def cell(p, s, tok, lr, step):
    l, gr = gf(p, frozen, tok)
    mu = s[0].mu
    dot = sum(jnp.sum(a*b) for a, b in zip(jax.tree.leaves(gr), jax.tree.leaves(mu)))
    cos = dot / (optax.tree.norm(gr) * optax.tree.norm(mu) + 1e-12)
    u, s = mk(lr*shape(step)).update(gr, s, p)
    un = optax.tree.norm(u); pn = optax.tree.norm(p)
    return optax.apply_updates(p, u), s, (l, cos, un/pn)
lrs = jnp.array([3e-4,1e-3,3e-3,1e-2,3e-2])
f = jax.jit(jax.vmap(cell, in_axes=(0,0,0,0,None)))
P = stack(params, 5); S = jax.vmap(lambda p: mk(1.0).init(p))(P)
orders = [data_lib.BatchOrder(data.train.windows, 8, 1) for _ in range(5)]
L, C, R = [], [], []
for i in range(300):
    tok = np.stack([o.batch(i) for o in orders])
    P, S, (l, c, r) = f(P, S, tok, lrs, i)
    L.append(l); C.append(c); R.append(r)
L, C, R = map(lambda x: np.array(jax.device_get(x)), (L, C, R))
for j, lr in enumerate([3e-4,1e-3,3e-3,1e-2,3e-2]):
    print(lr, "loss", [round(float(L[a:a+30, j].mean()),3) for a in range(0,300,30)])
    print(lr, "cos ", [round(float(C[a:a+30, j].mean()),3) for a in range(0,300,30)])
    print(lr, "cossd", [round(float(C[a:a+30, j].std()),3) for a in range(0,300,30)])
