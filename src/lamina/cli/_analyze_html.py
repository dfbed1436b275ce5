"""`lamina analyze --html`: one self-contained page (no network, no external files).

The page embeds the `--json` document and draws it with a little inline script: the
layer stack as bars (live and wasted bytes), a file tree per layer with A/M/D markers
(expanded on demand, filterable), the waste table with lines and fixes, and with
`--store` the images and the layers they share. `#layer=N` opens layer N's tree,
`#expand=all` expands it fully (for links and for tests).
"""

from __future__ import annotations

import os
from pathlib import Path

from lamina.errors import LaminaError

_CSS = """
:root{--live:#3b82f6;--waste:#ef4444;--bg:#f8fafc;--fg:#0f172a;--dim:#64748b;--card:#fff}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
 background:var(--bg);color:var(--fg)}
header{background:#0f172a;color:#fff;padding:20px 32px}
header h1{margin:0;font-size:22px;font-weight:600}
header .sub{color:#94a3b8;margin-top:4px}
main{padding:20px 32px;max-width:1200px}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin-bottom:20px}
.card{background:var(--card);border-radius:10px;padding:12px 16px;min-width:150px;
 box-shadow:0 1px 3px rgba(0,0,0,.08)}
.card .v{font-size:22px;font-weight:600}.card .k{color:var(--dim);font-size:12px;
 text-transform:uppercase;letter-spacing:.04em}
.card.bad .v{color:var(--waste)}
section{background:var(--card);border-radius:10px;padding:16px 20px;margin-bottom:20px;
 box-shadow:0 1px 3px rgba(0,0,0,.08)}
h2{font-size:16px;margin:0 0 12px}
.layer{display:grid;grid-template-columns:36px 1fr 80px 130px;gap:10px;align-items:center;
 padding:5px 6px;border-radius:6px;cursor:pointer}
.layer:hover,.layer.sel{background:#eef2ff}
.layer>div{min-width:0}
h3{font-size:13px;margin:16px 0 6px;color:#334155}
#dups td.num{width:110px}
.layer .n{color:var(--dim);text-align:right}
.bar{height:18px;background:#e2e8f0;border-radius:4px;overflow:hidden;display:flex}
.bar .l{background:var(--live)}.bar .w{background:var(--waste)}
.inst{font:12px ui-monospace,Menlo,monospace;color:#334155;white-space:nowrap;overflow:hidden;
 text-overflow:ellipsis}
.inst .where{color:#7c3aed}
.num{text-align:right;font-variant-numeric:tabular-nums}
.legend span{display:inline-block;width:10px;height:10px;border-radius:2px;margin:0 4px 0 12px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #e2e8f0;vertical-align:top}
th{font-size:12px;color:var(--dim);text-transform:uppercase}
td.path{font:12px ui-monospace,Menlo,monospace;word-break:break-all}
.kind{font-size:11px;padding:2px 6px;border-radius:999px;background:#fee2e2;color:#991b1b;
 white-space:nowrap}
.fix{color:var(--dim);font-size:12px}
.tree{font:12px ui-monospace,Menlo,monospace;max-height:520px;overflow:auto;
 border:1px solid #e2e8f0;border-radius:6px;padding:6px}
.tree details{margin-left:14px}.tree summary{cursor:pointer}
.tree .f{margin-left:28px}
.m{display:inline-block;width:16px;font-weight:700;text-align:center}
.mA{color:#16a34a}.mM{color:#ca8a04}.mD{color:#dc2626}
.sz{color:var(--dim);margin-left:8px}
input[type=search]{width:100%;padding:7px 10px;border:1px solid #cbd5e1;border-radius:6px;
 margin-bottom:8px;font-size:13px}
.muted{color:var(--dim)}
svg text{font:11px system-ui,sans-serif}
"""

_JS = r"""
const D = JSON.parse(document.getElementById('data').textContent);
const IMG = D.layers ? D : null;
const STORE = D.store || (D.images && D.duplicate_files ? D : null);
function hs(n){const u=['B','kB','MB','GB','TB'];let i=0;n=Math.abs(n);
 while(n>=1000&&i<u.length-1){n/=1000;i++}return (i?n.toPrecision(3):n)+u[i]}
function el(t,a,...c){const e=document.createElement(t);for(const k in (a||{})){
 if(k==='class')e.className=a[k];else if(k==='text')e.textContent=a[k];else e.setAttribute(k,a[k])}
 for(const x of c){if(x!=null)e.append(x)}return e}
const hash=new URLSearchParams(location.hash.slice(1));
const main=document.querySelector('main');
function card(k,v,bad){return el('div',{class:'card'+(bad?' bad':'')},
 el('div',{class:'v',text:v}),el('div',{class:'k',text:k}))}
function buildTree(entries){const root={name:'/',kids:new Map(),e:null};
 for(const e of entries){const parts=e.path.split('/').filter(Boolean);let n=root;
  for(const p of parts){if(!n.kids.has(p))n.kids.set(p,{name:p,kids:new Map(),e:null});
   n=n.kids.get(p)}
  n.e=e}return root}
function nodeLine(n){const e=n.e||{};const s=el('span');
 s.append(el('span',{class:'m m'+(e.change||''),text:e.change||' '}),n.name+(n.kids.size?'/':''));
 if(e.type==='symlink')s.append(el('span',{class:'sz',text:'→ '+e.link}));
 if(e.size)s.append(el('span',{class:'sz',text:hs(e.size)}));return s}
function renderKids(n,into,all){const kids=[...n.kids.values()].sort((a,b)=>
 (b.kids.size>0)-(a.kids.size>0)||a.name.localeCompare(b.name));
 for(const k of kids){if(k.kids.size){const d=el('details',{'data-path':k.name});
   const s=el('summary');s.append(nodeLine(k));d.append(s);let done=false;
   const fill=()=>{if(!done){done=true;renderKids(k,d,all)}};
   d.addEventListener('toggle',fill);if(all){d.open=true;fill()}into.append(d)}
  else into.append(el('div',{class:'f'},nodeLine(k)))}}
function showTree(i){const L=IMG.layers[i];const box=document.getElementById('tree');
 box.replaceChildren();document.querySelectorAll('.layer').forEach(
  (r,j)=>r.classList.toggle('sel',j===i));
 document.getElementById('treetitle').textContent=
  'Files of layer '+i+(L.line?' ('+L.line+')':'')+': '+(L.entries||[]).length+' entries';
 const q=document.getElementById('filter').value.trim();
 let es=L.entries||[];if(q)es=es.filter(e=>e.path.includes(q));
 // A filter expands what it finds, unless that is most of a big layer.
 renderKids(buildTree(es),box,(q!==''&&es.length<=3000)||hash.get('expand')==='all')}
if(IMG){const t=IMG.totals,u=IMG.user;
 document.getElementById('title').textContent=IMG.image;
 document.getElementById('sub').textContent=IMG.layers.length+' layers'+
  (IMG.base?' · base '+IMG.base+' ('+IMG.base_layers+' layers)':'');
 const cards=el('div',{class:'cards'},card('image size',hs(t.image_bytes)),
  card('live bytes',hs(t.live_bytes)),card('wasted bytes',hs(t.wasted_bytes),t.wasted_bytes>0),
  card('efficiency',(100*t.efficiency).toFixed(1)+'%',t.efficiency<0.9),
  card('your waste',(u.wasted_percent).toFixed(1)+'%',u.wasted_percent>10));
 main.append(cards);
 const max=Math.max(1,...IMG.layers.map(l=>l.file_bytes));
 const sec=el('section',{id:'layers'},el('h2',{text:'Layer stack'}),
  el('div',{class:'legend muted'},'bar: regular-file bytes per layer',
   el('span',{style:'background:var(--live)'}),'live',el('span',{style:'background:var(--waste)'}),
   'wasted (hidden by a later layer)'));
 for(const L of IMG.layers){const live=L.file_bytes-L.wasted_bytes;
  const bar=el('div',{class:'bar',title:hs(live)+' live, '+hs(L.wasted_bytes)+' wasted'},
   el('div',{class:'l',style:'width:'+(100*live/max)+'%'}),
   el('div',{class:'w',style:'width:'+(100*L.wasted_bytes/max)+'%'}));
  const inst=el('div',{class:'inst',title:L.instruction});
  if(L.line)inst.append(el('span',{class:'where',text:L.line+' '}));
  inst.append((L.user?'':'(base) ')+L.instruction.replace(/\s+/g,' '));
  const row=el('div',{class:'layer','data-layer':L.index},el('div',{class:'n',text:L.index}),
   el('div',{},bar,inst),el('div',{class:'num',text:hs(L.size)}),
   el('div',{class:'num',text:'+'+L.added+' ~'+L.modified+' -'+L.removed}));
  row.addEventListener('click',()=>{showTree(L.index);location.hash='layer='+L.index});
  sec.append(row)}
 main.append(sec);
 const ws=el('section',{id:'waste'},el('h2',{text:'Waste: '+hs(t.wasted_bytes)+
  ' in '+IMG.waste.filter(w=>w.bytes).length+' hidden versions'}));
 if(IMG.lines.length){const tb=el('table',{id:'lines'},el('tr',{},el('th',{text:'wasted'}),
   el('th',{text:'instruction'}),el('th',{text:'fix'})));
  for(const w of IMG.lines){tb.append(el('tr',{class:'line'},
   el('td',{class:'num',text:hs(w.wasted_bytes)}),
   el('td',{class:'path',text:(w.line?w.line+' ':'')+w.instruction}),
   el('td',{class:'fix',text:w.fixes.join(' · ')})))}
  ws.append(el('h3',{text:'By instruction (the layer that hid the bytes)'}),tb)}
 const wt=el('table',{id:'wastetable'},el('tr',{},el('th',{text:'bytes'}),el('th',{text:'path'}),
  el('th',{text:'kind'}),el('th',{text:'stored in → hidden by'}),el('th',{text:'fix'})));
 for(const w of IMG.waste.filter(w=>w.bytes).slice(0,200)){wt.append(el('tr',{class:'waste-row'},
  el('td',{class:'num',text:hs(w.bytes)}),el('td',{class:'path',text:w.path}),
  el('td',{},el('span',{class:'kind',text:w.kind})),
  el('td',{text:'layer '+w.layer+' → '+(w.line||'layer '+w.hidden_by)}),
  el('td',{class:'fix',text:w.fix})))}
 if(!IMG.waste.some(w=>w.bytes))ws.append(el('p',{class:'muted',text:'No waste.'}));
 else ws.append(el('h3',{text:'Largest hidden versions'}),wt);
 main.append(ws);
 if(IMG.duplicates.length){const ds=el('section',{id:'dups'},el('h2',{text:'Duplicate content'}));
  const dt=el('table');for(const d of IMG.duplicates.slice(0,50)){dt.append(el('tr',{},
   el('td',{class:'num',text:hs(d.size)+' x '+d.paths.length}),
   el('td',{class:'path',text:d.paths.join('  ')})))}ds.append(dt);main.append(ds)}
 const ts=el('section',{id:'files'},el('h2',{id:'treetitle',text:'Files'}),
  el('input',{type:'search',id:'filter',placeholder:'filter paths (e.g. .deb, /usr/lib)'}),
  el('div',{class:'tree',id:'tree'}));
 main.append(ts);
 // #filter=TEXT opens the page filtered (a link to what matters, and what tests check).
 if(hash.get('filter'))document.getElementById('filter').value=hash.get('filter');
 document.getElementById('filter').addEventListener('input',()=>{
  const s=document.querySelector('.layer.sel');showTree(s?+s.dataset.layer:0)});
 const want=hash.get('layer');const first=IMG.layers.findIndex(l=>l.wasted_bytes>0);
 showTree(want!==null?+want:(first>=0?first:IMG.layers.length-1));}
if(STORE){const s=el('section',{id:'store'},el('h2',{text:'Store: '+STORE.images.length+
  ' images share '+hs(STORE.saved_bytes)}));
 const shared=new Map(STORE.layers.filter(l=>l.images.length>1).map((l,i)=>[l.diff_id,i]));
 const colors=['#6366f1','#10b981','#f59e0b','#ec4899','#14b8a6','#8b5cf6','#f97316','#84cc16'];
 const W=150,H=22,gap=30,n=STORE.images.length,
  rows=Math.max(1,...STORE.images.map(i=>i.layers.length));
 const ns='http://www.w3.org/2000/svg';const svg=document.createElementNS(ns,'svg');
 svg.setAttribute('width',n*(W+gap)+20);svg.setAttribute('height',rows*(H+4)+40);
 svg.setAttribute('id','sharing');
 STORE.images.forEach((img,c)=>{const x=10+c*(W+gap);
  const t=document.createElementNS(ns,'text');t.setAttribute('x',x);t.setAttribute('y',14);
  t.textContent=img.name.length>24?img.name.slice(0,23)+'…':img.name;svg.append(t);
  img.layers.forEach((d,r)=>{const y=24+(rows-1-r)*(H+4);const k=shared.get(d);
   const b=document.createElementNS(ns,'rect');b.setAttribute('x',x);b.setAttribute('y',y);
   b.setAttribute('width',W);b.setAttribute('height',H);b.setAttribute('rx',4);
   b.setAttribute('fill',k===undefined?'#cbd5e1':colors[k%colors.length]);
   const tt=document.createElementNS(ns,'title');tt.textContent=d+(k===undefined?'':' (shared)');
   b.append(tt);svg.append(b);const lt=document.createElementNS(ns,'text');
   lt.setAttribute('x',x+6);lt.setAttribute('y',y+15);lt.setAttribute('fill',k===undefined?'#334155':'#fff');
   lt.textContent=d.slice(7,19);svg.append(lt)})});
 s.append(el('p',{class:'muted',text:'Each column is an image, bottom layer at the bottom; '+
  'a colour marks a layer stored once and used by several images.'}),svg);
 const st=el('table',{});for(const l of STORE.layers.filter(l=>l.images.length>1)){st.append(
  el('tr',{},el('td',{class:'path',text:l.diff_id.slice(0,19)}),el('td',{class:'num',text:hs(l.size)}),
  el('td',{text:l.images.join(', ')})))}s.append(st);
 if(!IMG){document.getElementById('title').textContent='lamina store'}
 main.append(s)}
"""


def render_html(doc_json: str, title: str) -> str:
    """The page for a `--json` document (an image report, possibly with a store's)."""
    # `<` only occurs inside JSON strings: escaped, no `</script>` or `<!--` can end the tag.
    data = doc_json.replace("<", "\\u003c")
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"
        f"<title>lamina analyze: {_escape(title)}</title><style>{_CSS}</style></head><body>"
        "<header><h1 id='title'></h1><div class='sub' id='sub'>lamina analyze</div></header>"
        "<main></main>"
        f"<script type='application/json' id='data'>{data}</script>"
        f"<script>{_JS}</script></body></html>\n"
    )


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def write_html(path: Path, doc_json: str, title: str) -> None:
    """Write the page next to `path` first, then rename: never half a report."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(render_html(doc_json, title), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise LaminaError(
            f"cannot write the report to {path}: {exc.strerror}",
            hint="give --html a file in a directory you can write to",
        ) from None
