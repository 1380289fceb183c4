/**
 * The edge dashboard: one page, four views (tunnels, routes & vnets, devices, traffic), kept
 * live by the edge's event stream. Every change goes through the JSON API, whose errors are
 * the CLI's own; they are shown as the API gave them.
 */
import { html, render } from 'htm/preact';
import { useCallback, useEffect, useMemo, useState } from 'preact/hooks';
import { api, ApiError, login, logout, resume, type Device, type Route, type Traffic, type Tunnel, type Update, type Vnet } from './api.js';
import { RateChart } from './chart.js';
import { bytes, duration, rate, shortId } from './format.js';
import './style.css';

type View = 'tunnels' | 'routes' | 'devices' | 'traffic';
const VIEWS: { id: View; label: string }[] = [
  { id: 'tunnels', label: 'Tunnels' },
  { id: 'routes', label: 'Routes & vnets' },
  { id: 'devices', label: 'Devices' },
  { id: 'traffic', label: 'Traffic' },
];
/** Samples kept for the charts (one a second). */
const HISTORY = 90;

const viewFromHash = (): View => VIEWS.find((v) => `#/${v.id}` === location.hash)?.id ?? 'tunnels';
const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

function Login({ onDone }: { onDone: () => void }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError('');
    try {
      await login(token.trim());
      onDone();
    } catch (err) {
      setError(message(err));
    } finally {
      setBusy(false);
    }
  };
  return html`<main class="login">
    <form onSubmit=${submit} aria-labelledby="login-title">
      <h1 id="login-title">oxyctl edge</h1>
      <p>Log in with the token that <code>oxyctl edge dashboard-token</code> prints on the edge's host.</p>
      <label for="token">Dashboard token</label>
      <input id="token" name="token" type="password" autocomplete="current-password" required autofocus value=${token} onInput=${(e: Event) => setToken((e.target as HTMLInputElement).value)} />
      ${error && html`<p class="error" role="alert">${error}</p>`}
      <button type="submit" disabled=${busy}>Log in</button>
    </form>
  </main>`;
}

function StatusBadge({ status }: { status: Tunnel['status'] }) {
  return html`<span class=${`badge ${status}`} data-status=${status}>${status}</span>`;
}

function Tunnels({ tunnels, traffic }: { tunnels: Tunnel[]; traffic?: Traffic }) {
  const [open, setOpen] = useState<string | null>(null);
  if (tunnels.length === 0) return html`<p class="empty">No tunnels yet: <code>oxyctl tunnel create NAME</code>.</p>`;
  return html`<table class="grid" aria-label="Tunnels">
    <thead><tr><th scope="col">Name</th><th scope="col">Status</th><th scope="col">Connections</th><th scope="col">Hostnames</th><th scope="col" class="num">Requests/s</th><th scope="col">ID</th></tr></thead>
    <tbody>
      ${tunnels.map(
        (t) => html`<tr key=${t.id} data-tunnel=${t.name}>
            <th scope="row">
              <button class="link" aria-expanded=${open === t.id} aria-controls=${`conns-${t.id}`} onClick=${() => setOpen(open === t.id ? null : t.id)}>${t.name}</button>
            </th>
            <td><${StatusBadge} status=${t.status} /></td>
            <td>${t.connections.length}</td>
            <td>${t.hostnames.join(', ') || html`<span class="muted">none</span>`}</td>
            <td class="num">${rate(traffic?.tunnels.find((x) => x.id === t.id)?.requests_per_s ?? 0)}</td>
            <td><code title=${t.id}>${shortId(t.id)}</code></td>
          </tr>
          ${
            open === t.id &&
            html`<tr id=${`conns-${t.id}`} class="details"><td colspan="6">
            ${
              t.connections.length === 0
                ? html`<p class="muted">No connector is connected.</p>`
                : html`<table class="inner" aria-label=${`Connections of ${t.name}`}>
                  <thead><tr><th scope="col">#</th><th scope="col">Edge</th><th scope="col">Protocol</th><th scope="col">Origin IP</th><th scope="col">Connector</th><th scope="col">Uptime</th></tr></thead>
                  <tbody>${t.connections.map(
                    (c) =>
                      html`<tr key=${c.id}><td>${c.conn_index}</td><td>${c.edge}</td><td>${c.protocol}</td><td>${c.origin_ip}</td><td>${c.client_version} ${c.arch}</td><td>${duration(c.uptime_seconds)}</td></tr>`,
                  )}</tbody>
                </table>`
            }
          </td></tr>`
          }`,
      )}
    </tbody>
  </table>`;
}

/** A form whose submit runs `action`; its error (the API's text) shows under it. */
function useAction(after: () => void) {
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const run = useCallback(
    async (action: () => Promise<unknown>) => {
      setBusy(true);
      setError('');
      try {
        await action();
        after();
        return true;
      } catch (err) {
        setError(err instanceof ApiError ? err.message : message(err));
        return false;
      } finally {
        setBusy(false);
      }
    },
    [after],
  );
  return { error, busy, run };
}

const value = (e: Event): string => (e.target as HTMLInputElement).value;

function Routes({ tunnels }: { tunnels: Tunnel[] }) {
  const [vnets, setVnets] = useState<Vnet[]>([]);
  const [routes, setRoutes] = useState<Route[]>([]);
  const [filter, setFilter] = useState('');
  const [vnetFilter, setVnetFilter] = useState('');
  const [tunnelFilter, setTunnelFilter] = useState('');
  const [form, setForm] = useState({ network: '', tunnel: '', vnet: '', comment: '' });
  const [vnetForm, setVnetForm] = useState({ name: '', comment: '', is_default: false });
  const [lookup, setLookup] = useState({ ip: '', vnet: '' });
  const [found, setFound] = useState<{ ip: string; route: Route | null } | null>(null);
  const reload = useCallback(() => {
    void api.vnets().then(setVnets);
    void api.routes().then(setRoutes);
  }, []);
  // Changes made elsewhere (the CLI, another browser) show up within a few seconds.
  useEffect(() => {
    reload();
    const timer = setInterval(reload, 5000);
    return () => clearInterval(timer);
  }, []);
  const routeAction = useAction(reload);
  const vnetAction = useAction(reload);
  /** A vnet whose deletion was refused for its routes: offer to delete it with them (--force). */
  const [forceable, setForceable] = useState<Vnet | null>(null);
  const deleteVnet = async (v: Vnet, force = false) => {
    setForceable(null);
    try {
      await api.deleteVnet(v.id, force);
      reload();
    } catch (err) {
      if (err instanceof ApiError && err.code === 'OXY_ERR_VNET_IN_USE') setForceable(v);
      await vnetAction.run(() => Promise.reject(err));
    }
  };
  const lookupAction = useAction(() => undefined);
  const shown = useMemo(() => {
    const f = filter.trim().toLowerCase();
    return routes.filter(
      (r) =>
        (!vnetFilter || r.virtual_network_id === vnetFilter) &&
        (!tunnelFilter || r.tunnel_id === tunnelFilter) &&
        (!f || [r.network, r.tunnel_name, r.virtual_network_name, r.comment, r.id].some((x) => x.toLowerCase().includes(f))),
    );
  }, [routes, filter, vnetFilter, tunnelFilter]);

  const addRoute = async (e: Event) => {
    e.preventDefault();
    if (
      await routeAction.run(() =>
        api.addRoute({ network: form.network.trim(), tunnel: form.tunnel, vnet: form.vnet || undefined, comment: form.comment || undefined }),
      )
    )
      setForm({ ...form, network: '', comment: '' });
  };
  const addVnet = async (e: Event) => {
    e.preventDefault();
    if (await vnetAction.run(() => api.addVnet({ name: vnetForm.name.trim(), comment: vnetForm.comment || undefined, is_default: vnetForm.is_default })))
      setVnetForm({ name: '', comment: '', is_default: false });
  };
  const doLookup = async (e: Event) => {
    e.preventDefault();
    setFound(null);
    await lookupAction.run(async () => setFound(await api.lookup(lookup.ip.trim(), lookup.vnet || undefined)));
  };
  const vnetOptions = (empty: string) =>
    html`<option value="">${empty}</option>${vnets.map((v) => html`<option value=${v.id}>${v.name}${v.is_default_network ? ' (default)' : ''}</option>`)}`;

  return html`<div class="stack">
    <section aria-labelledby="routes-title">
      <h2 id="routes-title">IP routes</h2>
      <div class="toolbar">
        <label>Filter <input type="search" placeholder="network, tunnel, comment…" value=${filter} onInput=${(e: Event) => setFilter(value(e))} /></label>
        <label>Virtual network <select value=${vnetFilter} onChange=${(e: Event) => setVnetFilter(value(e))}>${vnetOptions('all')}</select></label>
        <label>Tunnel <select value=${tunnelFilter} onChange=${(e: Event) => setTunnelFilter(value(e))}>
          <option value="">all</option>${tunnels.map((t) => html`<option value=${t.id}>${t.name}</option>`)}
        </select></label>
      </div>
      <table class="grid" aria-label="IP routes">
        <thead><tr><th scope="col">Network</th><th scope="col">Virtual network</th><th scope="col">Tunnel</th><th scope="col">Comment</th><th scope="col">Created</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
        <tbody>
          ${shown.length === 0 && html`<tr><td colspan="6" class="muted">No routes${routes.length ? ' match the filter' : ''}.</td></tr>`}
          ${shown.map(
            (r) => html`<tr key=${r.id} data-route=${r.network}>
              <td><code>${r.network}</code></td><td>${r.virtual_network_name}</td><td>${r.tunnel_name}</td><td>${r.comment}</td><td>${r.created_at}</td>
              <td><button class="danger small" aria-label=${`Delete route ${r.network} in ${r.virtual_network_name}`} onClick=${() => routeAction.run(() => api.deleteRoute(r.id))}>Delete</button></td>
            </tr>`,
          )}
        </tbody>
      </table>
      <form class="inline" onSubmit=${addRoute} aria-label="Add a route">
        <label>Network <input name="network" required placeholder="10.1.0.0/16" value=${form.network} onInput=${(e: Event) => setForm({ ...form, network: value(e) })} /></label>
        <label>Tunnel <select name="tunnel" required value=${form.tunnel} onChange=${(e: Event) => setForm({ ...form, tunnel: value(e) })}>
          <option value="">choose…</option>${tunnels.map((t) => html`<option value=${t.id}>${t.name}</option>`)}
        </select></label>
        <label>Virtual network <select name="vnet" value=${form.vnet} onChange=${(e: Event) => setForm({ ...form, vnet: value(e) })}>${vnetOptions('default')}</select></label>
        <label>Comment <input name="comment" value=${form.comment} onInput=${(e: Event) => setForm({ ...form, comment: value(e) })} /></label>
        <button type="submit" disabled=${routeAction.busy}>Add route</button>
      </form>
      ${routeAction.error && html`<p class="error" role="alert">${routeAction.error}</p>`}
    </section>

    <section aria-labelledby="lookup-title">
      <h2 id="lookup-title">Which route serves this IP?</h2>
      <form class="inline" onSubmit=${doLookup}>
        <label>IP <input name="ip" required placeholder="10.1.2.3" value=${lookup.ip} onInput=${(e: Event) => setLookup({ ...lookup, ip: value(e) })} /></label>
        <label>Virtual network <select value=${lookup.vnet} onChange=${(e: Event) => setLookup({ ...lookup, vnet: value(e) })}>${vnetOptions('default')}</select></label>
        <button type="submit">Look up</button>
      </form>
      <div aria-live="polite" class="lookup-result">
        ${lookupAction.error && html`<p class="error" role="alert">${lookupAction.error}</p>`}
        ${found && (found.route ? html`<p><code>${found.ip}</code> goes through <strong>${found.route.tunnel_name}</strong> by route <code>${found.route.network}</code> in ${found.route.virtual_network_name}.</p>` : html`<p>No route matches the IP <code>${found.ip}</code>.</p>`)}
      </div>
    </section>

    <section aria-labelledby="vnets-title">
      <h2 id="vnets-title">Virtual networks</h2>
      <table class="grid" aria-label="Virtual networks">
        <thead><tr><th scope="col">Name</th><th scope="col">Default</th><th scope="col">Comment</th><th scope="col">Routes</th><th scope="col">ID</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
        <tbody>${vnets.map(
          (v) => html`<tr key=${v.id} data-vnet=${v.name}>
            <td>${v.name}</td><td>${v.is_default_network ? 'yes' : ''}</td><td>${v.comment}</td>
            <td>${routes.filter((r) => r.virtual_network_id === v.id).length}</td><td><code title=${v.id}>${shortId(v.id)}</code></td>
            <td><button class="danger small" aria-label=${`Delete virtual network ${v.name}`} onClick=${() => deleteVnet(v)}>Delete</button></td>
          </tr>`,
        )}</tbody>
      </table>
      <form class="inline" onSubmit=${addVnet} aria-label="Add a virtual network">
        <label>Name <input name="vnet-name" required value=${vnetForm.name} onInput=${(e: Event) => setVnetForm({ ...vnetForm, name: value(e) })} /></label>
        <label>Comment <input name="vnet-comment" value=${vnetForm.comment} onInput=${(e: Event) => setVnetForm({ ...vnetForm, comment: value(e) })} /></label>
        <label class="check"><input type="checkbox" checked=${vnetForm.is_default} onChange=${(e: Event) => setVnetForm({ ...vnetForm, is_default: (e.target as HTMLInputElement).checked })} /> default</label>
        <button type="submit" disabled=${vnetAction.busy}>Add virtual network</button>
      </form>
      ${
        vnetAction.error &&
        html`<p class="error" role="alert">${vnetAction.error}
        ${forceable && html` <button class="danger small" onClick=${() => deleteVnet(forceable, true)}>Delete ${forceable.name} with its routes</button>`}</p>`
      }
    </section>
  </div>`;
}

function Devices({ devices }: { devices: Device[] }) {
  const [confirming, setConfirming] = useState<string | null>(null);
  const action = useAction(() => setConfirming(null));
  if (devices.length === 0) return html`<p class="empty">No devices are enrolled: <code>oxyctl warp enroll NAME</code>.</p>`;
  return html`<div>
    <table class="grid" aria-label="Devices">
      <thead><tr><th scope="col">Name</th><th scope="col">State</th><th scope="col">Virtual network</th><th scope="col">May use</th><th scope="col">From</th><th scope="col">Since</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
      <tbody>${devices.map(
        (d) => html`<tr key=${d.id} data-device=${d.name}>
          <th scope="row">${d.name}</th>
          <td><span class=${`badge ${d.connected ? 'healthy' : 'down'}`} data-connected=${String(d.connected)}>${d.connected ? 'connected' : 'not connected'}</span></td>
          <td>${d.vnet_name ?? html`<span class="muted">–</span>`}</td>
          <td>${d.allowed_vnets.length ? d.allowed_vnets.join(', ') : html`<span class="muted">every vnet</span>`}</td>
          <td>${d.origin_ip ? `${d.origin_ip} (${d.protocol})` : ''}</td>
          <td>${d.connected_since ? new Date(d.connected_since).toLocaleTimeString() : ''}</td>
          <td>${
            confirming === d.id
              ? html`<button class="danger small" autofocus onClick=${() => action.run(() => api.revoke(d.id))}>Confirm revoke</button> <button class="small" onClick=${() => setConfirming(null)}>Cancel</button>`
              : html`<button class="small" aria-label=${`Revoke ${d.name}`} onClick=${() => setConfirming(d.id)}>Revoke</button>`
          }</td>
        </tr>`,
      )}</tbody>
    </table>
    ${action.error && html`<p class="error" role="alert">${action.error}</p>`}
  </div>`;
}

interface Sample {
  t: number;
  traffic: Traffic;
}

function TrafficView({ history }: { history: Sample[] }) {
  const last = history.at(-1)?.traffic;
  const times = useMemo(() => history.map((s) => s.t), [history]);
  const perTunnel = (pick: (r: Traffic['tunnels'][number]) => number) => {
    const names = [...new Set(history.flatMap((s) => s.traffic.tunnels.map((t) => t.name)))].sort();
    return names.map((name) => ({
      label: name,
      values: history.map((s) => pick(s.traffic.tunnels.find((t) => t.name === name) ?? ({ requests_per_s: 0, bytes_per_s: 0, requests_total: 0 } as never))),
    }));
  };
  const reqSeries = useMemo(() => perTunnel((t) => t.requests_per_s), [history]);
  const byteSeries = useMemo(() => perTunnel((t) => t.bytes_per_s), [history]);
  if (!last) return html`<p class="muted">Waiting for the first sample…</p>`;
  const total = last.tunnels.reduce((n, t) => n + t.requests_total, 0);
  const rps = last.tunnels.reduce((n, t) => n + t.requests_per_s, 0);
  const bps = last.tunnels.reduce((n, t) => n + t.bytes_per_s, 0);
  const flows = last.flows.reduce((n, f) => n + f.active, 0);
  return html`<div class="stack">
    <div class="cards" aria-live="off">
      <div class="card"><span class="label">Requests</span><span class="big" data-testid="requests-total">${total}</span></div>
      <div class="card"><span class="label">Requests/s</span><span class="big" data-testid="requests-rate">${rate(rps)}</span></div>
      <div class="card"><span class="label">Bytes/s</span><span class="big">${bytes(bps)}</span></div>
      <div class="card"><span class="label">Active IP flows</span><span class="big">${flows}</span></div>
    </div>
    <div class="charts">
      <${RateChart} title="Requests/s per tunnel" times=${times} series=${reqSeries} format=${rate} />
      <${RateChart} title="Bytes/s per tunnel" times=${times} series=${byteSeries} format=${bytes} />
    </div>
    <section aria-labelledby="hosts-title">
      <h2 id="hosts-title">Per hostname</h2>
      <table class="grid" aria-label="Traffic per hostname">
        <thead><tr><th scope="col">Hostname</th><th scope="col">Tunnel</th><th scope="col" class="num">Requests/s</th><th scope="col" class="num">Bytes/s</th><th scope="col" class="num">Requests</th></tr></thead>
        <tbody>
          ${last.hostnames.length === 0 && html`<tr><td colspan="5" class="muted">No requests yet.</td></tr>`}
          ${last.hostnames.map(
            (h) =>
              html`<tr key=${h.hostname} data-hostname=${h.hostname}><td>${h.hostname || html`<span class="muted">(no Host)</span>`}</td><td>${last.tunnels.find((t) => t.id === h.tunnel_id)?.name ?? ''}</td><td class="num">${rate(h.requests_per_s)}</td><td class="num">${bytes(h.bytes_per_s)}</td><td class="num">${h.requests_total}</td></tr>`,
          )}
        </tbody>
      </table>
    </section>
    <div class="two">
      <section aria-labelledby="flows-title">
        <h2 id="flows-title">Active IP flows per virtual network</h2>
        <table class="grid" aria-label="Active IP flows">
          <thead><tr><th scope="col">Virtual network</th><th scope="col" class="num">Flows</th></tr></thead>
          <tbody>
            ${last.flows.length === 0 && html`<tr><td colspan="2" class="muted">No IP flows.</td></tr>`}
            ${last.flows.map((f) => html`<tr key=${f.vnet_name}><td>${f.vnet_name}</td><td class="num">${f.active}</td></tr>`)}
          </tbody>
        </table>
      </section>
      <section aria-labelledby="errors-title">
        <h2 id="errors-title">Errors by Proxy-Status</h2>
        <table class="grid" aria-label="Errors by Proxy-Status">
          <thead><tr><th scope="col">Error</th><th scope="col" class="num">Per second</th><th scope="col" class="num">Total</th></tr></thead>
          <tbody>
            ${last.errors.length === 0 && html`<tr><td colspan="3" class="muted">No errors.</td></tr>`}
            ${last.errors.map((e) => html`<tr key=${e.proxy_status}><td><code>${e.proxy_status}</code></td><td class="num">${rate(e.per_s)}</td><td class="num">${e.total}</td></tr>`)}
          </tbody>
        </table>
      </section>
    </div>
  </div>`;
}

function Dashboard({ onLoggedOut }: { onLoggedOut: () => void }) {
  const [view, setView] = useState<View>(viewFromHash());
  const [update, setUpdate] = useState<Update | null>(null);
  const [history, setHistory] = useState<Sample[]>([]);
  const [live, setLive] = useState(false);

  useEffect(() => {
    const onHash = () => setView(viewFromHash());
    window.addEventListener('hashchange', onHash);
    return () => window.removeEventListener('hashchange', onHash);
  }, []);

  useEffect(() => {
    const events = new EventSource('/api/v1/events');
    events.addEventListener('update', (e) => {
      const u = JSON.parse((e as MessageEvent<string>).data) as Update;
      setUpdate(u);
      setLive(true);
      setHistory((h) => [...h.slice(-(HISTORY - 1)), { t: Date.parse(u.traffic.at) / 1000, traffic: u.traffic }]);
    });
    events.onerror = () => {
      setLive(false);
      // A stream the edge ended because the session did (new token, logout): back to the login.
      void resume().then(
        (ok) => ok || (events.close(), onLoggedOut()),
        () => undefined,
      );
    };
    return () => events.close();
  }, []);

  const go = (v: View) => {
    location.hash = `#/${v}`;
    setView(v);
  };
  const tunnels = update?.tunnels ?? [];
  const down = tunnels.filter((t) => t.status !== 'healthy').length;

  return html`<div class="app">
    <header>
      <span class="brand">oxyctl edge</span>
      <nav aria-label="Views">
        ${VIEWS.map((v) => html`<a href=${`#/${v.id}`} aria-current=${view === v.id ? 'page' : undefined} onClick=${(e: Event) => (e.preventDefault(), go(v.id))}>${v.label}</a>`)}
      </nav>
      <span class=${`live ${live ? 'on' : ''}`} role="status">${live ? 'live' : 'reconnecting…'}</span>
      <button class="small" onClick=${() => logout().finally(onLoggedOut)}>Log out</button>
    </header>
    <main id="main" tabindex="-1">
      <h1>${VIEWS.find((v) => v.id === view)!.label}${view === 'tunnels' && tunnels.length > 0 ? html` <small class="muted">${tunnels.length - down} of ${tunnels.length} healthy</small>` : ''}</h1>
      ${
        !update
          ? html`<p class="muted">Loading…</p>`
          : view === 'tunnels'
            ? html`<${Tunnels} tunnels=${tunnels} traffic=${update.traffic} />`
            : view === 'routes'
              ? html`<${Routes} tunnels=${tunnels} />`
              : view === 'devices'
                ? html`<${Devices} devices=${update.devices} />`
                : html`<${TrafficView} history=${history} />`
      }
    </main>
  </div>`;
}

function App() {
  const [authed, setAuthed] = useState<boolean | null>(null);
  useEffect(() => {
    resume().then(setAuthed, () => setAuthed(false));
  }, []);
  if (authed === null) return html`<p class="muted center">Loading…</p>`;
  return authed ? html`<${Dashboard} onLoggedOut=${() => setAuthed(false)} />` : html`<${Login} onDone=${() => setAuthed(true)} />`;
}

render(html`<${App} />`, document.getElementById('app')!);
