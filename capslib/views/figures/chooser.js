// Draws a capslib chooser (capslib/views/figures/chooser.py): menus for the seed, the cell
// (normal class and fraction, or held-out class) and, for histograms, the score; the chosen
// cell is drawn from the page's compact payload with the site's plotly.js (ROC curves,
// histograms) or as the cell's gallery strip, a PNG file beside the page. No kernel needed.
(function () {
  if (window.capslibChooser) return;

  function decode(text, bytes) {
    const raw = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
    return bytes === 2 ? new Uint16Array(raw.buffer) : raw;
  }
  const round = (v, d) => Math.round(v * 10 ** d) / 10 ** d;
  const axis = (i) => (i ? ['x' + (i + 1), 'y' + (i + 1)] : ['x', 'y']);

  // an item names its cell by index c into P.cells: [seed, group, panel index, cell id]
  function rocTraces(P, items) {
    const out = [], shown = new Set();
    for (const it of items) {
      const cell = P.cells[it.c], name = P.names[it.n], [x, y] = axis(cell[2]);
      const tpr = Array.from(decode(it.t, 2), (v) => round(v / 65535, 4));
      out.push({type: 'scatter', mode: 'lines', x: P.fpr, y: tpr, name: name, legendgroup: name,
                showlegend: !shown.has(name), line: {color: P.name_colors[it.n]}, xaxis: x, yaxis: y,
                hovertemplate: `${name}<br>AUROC ${it.a === null ? 'n/a' : it.a.toFixed(4)}<br>FPR %{x}<br>TPR %{y}<extra>${cell[3]}</extra>`});
      shown.add(name);
    }
    P.panels.forEach((_, i) => {
      const [x, y] = axis(i);
      out.push({type: 'scatter', mode: 'lines', x: P.chance, y: P.chance, name: 'chance', showlegend: i === 0,
                hoverinfo: 'skip', line: {dash: 'dot', color: 'grey'}, xaxis: x, yaxis: y});
    });
    return out;
  }

  function histBars(it, bins) {
    const width = (it.hi - it.lo) / bins;
    const centres = Array.from({length: bins}, (_, i) => round(it.lo + (i + 0.5) * width, 6));
    const share = (h, m) => Array.from(decode(h, 1), (v) => round(v / 255 * m, 5));
    return [centres, share(it.hN, it.mN), share(it.hA, it.mA), width];
  }

  function histTraces(P, items, score) {
    const out = [], shown = new Set();
    for (const it of items.filter((i) => P.scores[i.sc] === score)) {
      const cell = P.cells[it.c], [x, y] = axis(cell[2]);
      const [centres, normal, anomalous, width] = histBars(it, P.bins);
      [['normal', normal, P.colors[0]], ['anomalous', anomalous, P.colors[1]]].forEach(([kind, ys, color]) => {
        out.push({type: 'bar', x: centres, y: ys, width: width, name: `${kind} test images`, legendgroup: kind,
                  showlegend: !shown.has(kind), marker: {color: color}, opacity: 0.6, xaxis: x, yaxis: y,
                  hovertemplate: `${kind}<br>score %{x}<br>share %{y}<extra>${cell[3]}</extra>`});
        shown.add(kind);
      });
      if (it.thr !== null) {
        const top = Math.max(0, ...normal, ...anomalous);
        out.push({type: 'scatter', mode: 'lines', x: [it.thr, it.thr], y: [0, top], name: 'threshold',
                  legendgroup: 'thr', showlegend: !shown.has('thr'), xaxis: x, yaxis: y,
                  line: {color: 'black', dash: 'dash'}});
        shown.add('thr');
      }
    }
    return out;
  }

  // an empty trace in every panel without one: plotly.js draws no axes for a subplot without traces
  function keepAxes(P, traces) {
    const used = new Set(traces.map((t) => t.xaxis));
    P.panels.forEach((_, i) => {
      const [x, y] = axis(i);
      if (!used.has(x)) traces.push({type: 'scatter', mode: 'markers', x: [], y: [], xaxis: x, yaxis: y,
                                     showlegend: false, hoverinfo: 'skip'});
    });
    return traces;
  }

  function histNotes(P, layout, items, score) {
    const has = new Set(items.filter((i) => P.scores[i.sc] === score).map((i) => P.cells[i.c][2]));
    const notes = (layout.annotations || []).slice();
    P.panels.forEach((panel, i) => {
      if (!has.has(i) && items.some((it) => P.cells[it.c][2] === i)) {
        const [x, y] = axis(i);
        notes.push({text: `${panel} has no score ${P.score_labels[score]}:<br>pick one of its own`,
                    xref: `${x} domain`, yref: `${y} domain`, x: 0.5, y: 0.5, showarrow: false,
                    font: {color: 'grey'}});
      }
    });
    return notes;
  }

  window.capslibChooser = function (uid) {
    const root = document.getElementById(uid);
    const doc = JSON.parse(document.getElementById(uid + '-data').textContent);
    const P = doc.payload, kind = doc.kind;
    const menus = root.querySelector('.capslib-menus'), view = root.querySelector('.capslib-view');
    if (!P.seeds.length) return;
    const state = {seed: P.seeds[0], group: P.groups[String(P.seeds[0])][0], score: (P.scores || [])[0]};

    function menu(label, name, options, value, onchange) {
      const lab = document.createElement('label');
      lab.className = 'capslib-menu';
      lab.append(label + ' ');
      const sel = document.createElement('select');
      sel.name = name;
      sel.setAttribute('aria-label', label);
      fill(sel, options, value);
      sel.addEventListener('change', () => onchange(sel.value));
      lab.appendChild(sel);
      menus.appendChild(lab);
      return sel;
    }
    function fill(sel, options, value) {
      sel.replaceChildren(...options.map(([v, text]) => {
        const o = document.createElement('option');
        o.value = String(v);
        o.textContent = text;
        return o;
      }));
      sel.value = String(value);
    }
    const groupOptions = () => P.groups[String(state.seed)].map((g) => [g, g]);
    let groupSel = null;
    if (P.seeds.length > 1) {
      menu('seed', 'seed', P.seeds.map((s) => [s, `seed ${s}`]), state.seed, (v) => {
        state.seed = Number(v);
        const groups = P.groups[String(state.seed)];
        if (!groups.includes(state.group)) state.group = groups[0];
        fill(groupSel, groupOptions(), state.group);
        draw();
      });
    }
    groupSel = menu(P.group_label || 'cell', 'group', groupOptions(), state.group, (v) => { state.group = v; draw(); });
    if (kind === 'hist') {
      menu('score', 'score', P.scores.map((s) => [s, P.score_labels[s]]), state.score, (v) => { state.score = v; draw(); });
    }

    let plot = null, img = view.querySelector('img.capslib-strip');
    function draw() {
      const items = P.items.filter((it) => P.cells[it.c][0] === state.seed && P.cells[it.c][1] === state.group);
      root.dataset.choice = `${state.seed}|${state.group}|${state.score || ''}`;
      if (kind === 'gallery') {
        if (!img) { img = document.createElement('img'); img.className = 'capslib-strip'; view.appendChild(img); }
        if (items.length) { img.src = items[0].src; img.alt = state.group; }
        return;
      }
      if (!window.Plotly) { setTimeout(draw, 50); return; }
      if (!plot) { plot = document.createElement('div'); plot.className = 'capslib-plot'; view.appendChild(plot); }
      const layout = JSON.parse(JSON.stringify(doc.layout));
      if (kind === 'roc' && plot.layout) {   // keep what the reader set with the figure's buttons (log or linear FPR)
        for (const key of Object.keys(plot.layout)) {
          if (/^xaxis\d*$/.test(key) && layout[key]) {
            layout[key].type = plot.layout[key].type;
            layout[key].range = plot.layout[key].range;
          }
        }
        (layout.updatemenus || []).forEach((m, i) => { m.active = (plot.layout.updatemenus || [])[i]?.active ?? m.active; });
      }
      const traces = kind === 'roc' ? rocTraces(P, items) : keepAxes(P, histTraces(P, items, state.score));
      if (kind === 'hist') layout.annotations = histNotes(P, doc.layout, items, state.score);
      window.Plotly.react(plot, traces, layout, {responsive: true, displaylogo: false});
    }
    draw();
  };
})();
