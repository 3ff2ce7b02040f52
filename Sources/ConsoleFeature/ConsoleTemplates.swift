import Mustache

/// The console's pages as mustache templates, compiled into the binary. Every value is inserted
/// with `{{name}}`, which HTML-escapes it (`< > & " '`); no template uses triple braces or `{{&`
/// (ConsoleTemplateTests checks), so nothing a user pushed is ever rendered as markup. Each page
/// starts with the `header` partial and ends with `footer`: one landmark structure (skip link,
/// banner, navigation, main), headings in order, labelled controls.
enum ConsoleTemplates {
    static let header = """
    <!DOCTYPE html>
    <html lang="en">
    <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <meta name="referrer" content="no-referrer">
    <title>{{title}} · Berth</title>
    <link rel="stylesheet" href="/console/static/console.css">
    </head>
    <body>
    <a class="skip" href="#main">Skip to content</a>
    <header class="banner">
    <p class="brand"><a href="/console/repositories">Berth</a></p>
    {{#user}}
    <nav aria-label="Console">
    <ul>
    <li><a href="/console/repositories">Repositories</a></li>
    <li><a href="/console/usage">Usage</a></li>
    <li><a href="/console/tokens">Tokens</a></li>
    <li><a href="/console/webhooks">Webhooks</a></li>
    <li><a href="/console/audit">Audit log</a></li>
    <li><a href="/console/scans">Scans</a></li>
    <li><a href="/console/replicas">Replicas</a></li>
    <li><a href="/console/tasks">Tasks</a></li>
    </ul>
    </nav>
    <form class="signout" method="post" action="/console/logout">
    <span>Signed in as <strong id="whoami">{{user}}</strong></span>
    <input type="hidden" name="csrf" value="{{csrf}}">
    <button type="submit">Sign out</button>
    </form>
    {{/user}}
    {{#anonymous}}
    <p class="signout"><span>Anonymous (pull only)</span> <a href="/console/login">Sign in</a></p>
    {{/anonymous}}
    </header>
    <main id="main" tabindex="-1">
    <h1>{{title}}</h1>
    {{#notice}}<p class="notice" role="status">{{notice}}</p>{{/notice}}

    """

    static let footer = """
    </main>
    </body>
    </html>

    """

    static let login = """
    {{>header}}
    {{#error}}<p class="error" role="alert" id="login-error">{{error}}</p>{{/error}}
    <form method="post" action="/console/login" class="login">
    <input type="hidden" name="csrf" value="{{loginCSRF}}">
    <p><label for="username">User name</label>
    <input id="username" name="username" autocomplete="username" required maxlength="256" value="{{username}}"></p>
    <p><label for="password">Password</label>
    <input id="password" name="password" type="password" autocomplete="current-password" required maxlength="4096"></p>
    <p><button type="submit" id="signin">Sign in</button></p>
    </form>
    <p>Sign in with a Berth identity (or a token's name and password). The password travels only in this form's body.</p>
    {{>footer}}
    """

    static let repositories = """
    {{>header}}
    <form method="get" action="/console/repositories" role="search">
    <p><label for="q">Search repositories</label>
    <input id="q" name="q" type="search" maxlength="256" value="{{query}}">
    <button type="submit">Search</button></p>
    </form>
    {{#hasRepositories}}
    <table id="repositories">
    <caption>{{repositoryCount}} repositories you may read</caption>
    <thead><tr><th scope="col">Repository</th><th scope="col">Tags</th><th scope="col">Manifests</th><th scope="col">Last push</th></tr></thead>
    <tbody>
    {{#repositories}}
    <tr><td><a href="/console/repository?name={{urlName}}">{{name}}</a></td><td>{{tags}}</td><td>{{manifests}}</td><td>{{lastUpdated}}</td></tr>
    {{/repositories}}
    </tbody>
    </table>
    {{/hasRepositories}}
    {{^repositories}}<p id="no-repositories">No repository you may read{{#query}} matches “{{query}}”{{/query}}.</p>{{/repositories}}
    {{>footer}}
    """

    static let repository = """
    {{>header}}
    <p>{{manifests}} manifests, {{tagCount}} tags. Created {{created}}.</p>
    {{#hasTags}}
    <table id="tags">
    <caption>Tags of {{name}}</caption>
    <thead><tr><th scope="col">Tag</th><th scope="col">Digest</th><th scope="col">Size</th><th scope="col">Kind</th><th scope="col">Platforms</th><th scope="col">Pushed</th><th scope="col">Last pull</th></tr></thead>
    <tbody>
    {{#tags}}
    <tr><td class="tag">{{tag}}</td><td><a class="digest" href="/console/image?name={{urlRepository}}&amp;digest={{digest}}">{{digest}}</a></td><td>{{size}}</td><td>{{kind}}</td><td>{{platforms}}</td><td>{{pushed}}</td><td class="last-pull">{{lastPull}}</td></tr>
    {{/tags}}
    </tbody>
    </table>
    {{/hasTags}}
    {{^tags}}<p>No tags.</p>{{/tags}}
    <h2>Untagged manifests</h2>
    {{#hasUntagged}}
    <ul>{{#untagged}}<li><a class="digest" href="/console/image?name={{urlRepository}}&amp;digest={{digest}}">{{digest}}</a> ({{kind}}, {{size}})</li>{{/untagged}}</ul>
    {{/hasUntagged}}
    {{^untagged}}<p>None.</p>{{/untagged}}
    <p class="note">“Last pull” is the last pull by that tag; pulls are written every few seconds.</p>
    {{>footer}}
    """

    static let image = """
    {{>header}}
    <dl class="facts">
    <dt>Repository</dt><dd><a href="/console/repository?name={{urlRepository}}">{{repository}}</a></dd>
    <dt>Digest</dt><dd class="digest" id="digest">{{digest}}</dd>
    <dt>Media type</dt><dd>{{mediaType}}</dd>
    <dt>Kind</dt><dd id="artifact-kind">{{kind}}</dd>
    {{#artifactType}}<dt>Artifact type</dt><dd id="artifact-type">{{artifactType}}</dd>{{/artifactType}}
    <dt>Size</dt><dd>{{size}}</dd>
    <dt>Platforms</dt><dd id="image-platforms">{{platformList}}</dd>
    <dt>Last pull</dt><dd id="image-last-pull">{{lastPull}}</dd>
    <dt>Tags</dt><dd id="image-tags">{{#tags}}<span class="tag">{{.}}</span> {{/tags}}{{^tags}}none{{/tags}}</dd>
    {{#subject}}<dt>Refers to</dt><dd><a class="digest" href="/console/image?name={{urlRepository}}&amp;digest={{subject}}">{{subject}}</a></dd>{{/subject}}
    </dl>
    <h2>Quarantine</h2>
    <p id="quarantine-state">{{quarantine}}{{#quarantineReason}}: {{quarantineReason}}{{/quarantineReason}}</p>
    {{#canVerdict}}
    <form method="post" action="/console/quarantine" class="verdict">
    <input type="hidden" name="csrf" value="{{csrf}}">
    <input type="hidden" name="name" value="{{repository}}">
    <input type="hidden" name="digest" value="{{digest}}">
    <p><label for="reason">Reason</label> <input id="reason" name="reason" maxlength="1000"></p>
    <p><button type="submit" name="state" value="Passed" id="verdict-pass">Pass</button>
    <button type="submit" name="state" value="Failed" id="verdict-fail">Fail</button></p>
    </form>
    {{/canVerdict}}
    {{#hasPlatforms}}
    <h2>Platforms</h2>
    <table id="platforms"><thead><tr><th scope="col">Platform</th><th scope="col">Manifest</th><th scope="col">Size</th></tr></thead><tbody>
    {{#platforms}}<tr><td>{{platform}}</td><td><a class="digest" href="/console/image?name={{urlRepository}}&amp;digest={{digest}}">{{digest}}</a></td><td>{{size}}</td></tr>{{/platforms}}
    </tbody></table>
    {{/hasPlatforms}}
    {{#config}}<h2>Config</h2><p>{{mediaType}} <span class="digest">{{digest}}</span> ({{size}})</p>{{/config}}
    {{#hasLayers}}
    <h2>Layers</h2>
    <table id="layers"><thead><tr><th scope="col">#</th><th scope="col">Media type</th><th scope="col">Digest</th><th scope="col">Size</th></tr></thead><tbody>
    {{#layers}}<tr><td>{{index}}</td><td>{{mediaType}}</td><td class="digest">{{digest}}</td><td>{{size}}</td></tr>{{/layers}}
    </tbody></table>
    {{/hasLayers}}
    <h2>Annotations</h2>
    {{#hasAnnotations}}
    <dl id="annotations">{{#annotations}}<dt>{{key}}</dt><dd>{{value}}</dd>{{/annotations}}</dl>
    {{/hasAnnotations}}
    {{^annotations}}<p>None.</p>{{/annotations}}
    <h2>Signatures</h2>
    {{#hasSignatures}}
    <ul id="signatures">{{#signatures}}<li><a class="digest" href="/console/image?name={{urlRepository}}&amp;digest={{digest}}">{{digest}}</a> ({{artifactType}}): {{#verified}}<strong class="verified">verified</strong>, signed by <span class="signer">{{signer}}</span> ({{verification}}){{/verified}}{{#unverified}}<strong class="unverified">{{verification}}</strong>{{/unverified}}</li>{{/signatures}}</ul>
    {{/hasSignatures}}
    {{^signatures}}<p id="no-signatures">No signature refers to this manifest.</p>{{/signatures}}
    <h2>Referrers</h2>
    {{#hasReferrers}}
    <ul class="tree" id="referrers">{{#referrers}}{{>referrer}}{{/referrers}}</ul>
    {{/hasReferrers}}
    {{^referrers}}<p id="no-referrers">Nothing refers to this manifest.</p>{{/referrers}}
    {{#scanHidden}}<p id="scan-hidden">What is inside this image (packages, SBOMs, vulnerabilities) is shown to those who may pull it.</p>{{/scanHidden}}
    {{^scanHidden}}
    <h2 id="packages">Packages</h2>
    {{#inventory}}
    <p id="inventory-status">Inventory {{status}}{{#detail}} ({{detail}}){{/detail}}, made {{created}}{{#os}}; operating system {{os}}{{/os}}: {{packageCount}} packages.</p>
    {{#hasPackageTypes}}
    <table id="inventory"><caption>Packages by type</caption><thead><tr><th scope="col">Type</th><th scope="col">Packages</th></tr></thead><tbody>
    {{#packageTypes}}<tr><td>{{type}}</td><td>{{count}}</td></tr>{{/packageTypes}}
    </tbody></table>
    {{/hasPackageTypes}}
    {{/inventory}}
    {{#inventoryPending}}<p id="inventory-status">Not inventoried yet: the scanner follows pushes.</p>{{/inventoryPending}}
    <h2>SBOM</h2>
    {{#hasSboms}}
    <ul id="sbom-downloads">{{#sboms}}<li><a class="sbom" href="/console/sbom?name={{urlRepository}}&amp;digest={{digest}}&amp;format={{format}}" download>Download the {{label}} SBOM</a></li>{{/sboms}}</ul>
    {{/hasSboms}}
    {{^sboms}}<p id="no-sbom">No SBOM refers to this manifest yet.</p>{{/sboms}}
    <h2>Vulnerabilities</h2>
    {{#findings}}
    <p id="findings-status">{{total}} findings, matched against advisory database version {{advisoryVersion}}.</p>
    <svg id="findings-chart" role="img" aria-label="Findings by severity: {{summary}}" width="420" height="{{chartHeight}}" viewBox="0 0 420 {{chartHeight}}"><title>Findings by severity: {{summary}}</title>{{#bars}}<text x="0" y="{{textY}}">{{severity}}</text><rect x="90" y="{{y}}" width="{{width}}" height="16" fill="{{fill}}"></rect><text x="{{labelX}}" y="{{textY}}">{{count}}</text>{{/bars}}</svg>
    {{#hasRows}}
    <table id="findings"><caption>Findings, most severe first (at most 50)</caption><thead><tr><th scope="col">Advisory</th><th scope="col">Severity</th><th scope="col">Package</th><th scope="col">Installed</th><th scope="col">Fixed in</th></tr></thead><tbody>
    {{#rows}}<tr><td>{{id}}</td><td>{{severity}}</td><td>{{package}}</td><td>{{installed}}</td><td>{{fixed}}</td></tr>{{/rows}}
    </tbody></table>
    {{/hasRows}}
    {{/findings}}
    {{#findingsUnavailable}}<p id="findings-status">This server does not match images against advisories.</p>{{/findingsUnavailable}}
    {{#findingsPending}}<p id="findings-status">Not matched against the advisory database yet (matching follows the inventory).</p>{{/findingsPending}}
    {{/scanHidden}}
    {{>footer}}
    """

    /// One node of the referrers tree (recursive, depth bounded by the page's data).
    static let referrer = """
    <li><a class="digest" href="/console/image?name={{urlRepository}}&amp;digest={{digest}}">{{digest}}</a> <span class="kind">{{kind}}</span>{{#artifactType}} ({{artifactType}}){{/artifactType}}{{#hasChildren}}<ul>{{#children}}{{>referrer}}{{/children}}</ul>{{/hasChildren}}</li>
    """

    static let usage = """
    {{>header}}
    <dl class="facts" id="usage-totals">
    <dt>Storage</dt><dd>{{bytes}}</dd><dt>Blobs</dt><dd>{{blobs}}</dd><dt>Manifests</dt><dd>{{manifests}}</dd>
    <dt>Tags</dt><dd>{{tags}}</dd><dt>Repositories</dt><dd>{{repositories}}</dd><dt>In the recycle bin</dt><dd>{{deleted}}</dd>
    </dl>
    <h2 id="chart-title">Pushes per day, last {{days}} days</h2>
    <figure>
    <svg id="usage-chart" role="img" aria-labelledby="chart-title chart-desc" viewBox="0 0 {{width}} {{height}}" width="{{width}}" height="{{height}}" xmlns="http://www.w3.org/2000/svg">
    <desc id="chart-desc">{{description}}</desc>
    <line x1="40" y1="{{baseline}}" x2="{{width}}" y2="{{baseline}}" stroke="#1a1a1a" stroke-width="1"/>
    <text x="4" y="20" font-size="12" fill="#1a1a1a">{{max}}</text>
    <text x="4" y="{{baseline}}" font-size="12" fill="#1a1a1a">0</text>
    {{#bars}}<rect class="bar" x="{{x}}" y="{{y}}" width="{{w}}" height="{{h}}" fill="#1f5fa8"><title>{{label}}: {{count}} pushes, {{bytes}}</title></rect>
    <text x="{{labelX}}" y="{{labelY}}" font-size="10" fill="#1a1a1a" text-anchor="middle">{{short}}</text>{{/bars}}
    </svg>
    <figcaption>Manifest pushes per day (UTC) from the event log; the size is the pushed manifests' bytes.</figcaption>
    </figure>
    <table id="usage-table"><caption>The same numbers</caption><thead><tr><th scope="col">Day</th><th scope="col">Pushes</th><th scope="col">Bytes</th></tr></thead><tbody>
    {{#bars}}<tr><td>{{label}}</td><td>{{count}}</td><td>{{bytes}}</td></tr>{{/bars}}
    </tbody></table>
    {{>footer}}
    """

    static let tokens = """
    {{>header}}
    <h2>Tokens</h2>
    {{#hasTokens}}
    <table id="tokens"><thead><tr><th scope="col">Name</th><th scope="col">Scope map</th><th scope="col">Status</th><th scope="col">Passwords</th><th scope="col">Created</th></tr></thead><tbody>
    {{#tokens}}<tr><td>{{name}}</td><td>{{scopeMap}}</td><td>{{status}}</td><td>{{passwords}}</td><td>{{created}}</td></tr>{{/tokens}}
    </tbody></table>
    {{/hasTokens}}
    {{^tokens}}<p id="no-tokens">No tokens.</p>{{/tokens}}
    <h2>Scope maps</h2>
    {{#hasScopeMaps}}
    <table id="scope-maps"><thead><tr><th scope="col">Name</th><th scope="col">Description</th><th scope="col">Entries</th></tr></thead><tbody>
    {{#scopeMaps}}<tr><td>{{name}}</td><td>{{description}}</td><td><ul>{{#entries}}<li>{{.}}</li>{{/entries}}</ul></td></tr>{{/scopeMaps}}
    </tbody></table>
    {{/hasScopeMaps}}
    {{^scopeMaps}}<p id="no-scope-maps">No scope maps.</p>{{/scopeMaps}}
    <p class="note">Passwords are never shown again after they are created; create and rotate them with <code>berth token</code>.</p>
    {{>footer}}
    """

    static let webhooks = """
    {{>header}}
    {{#webhooks}}
    <section class="webhook" aria-labelledby="wh-{{index}}">
    <h2 id="wh-{{index}}">{{name}}</h2>
    <dl class="facts"><dt>URL</dt><dd>{{uri}}</dd><dt>Actions</dt><dd>{{actions}}</dd><dt>Scope</dt><dd>{{scope}}</dd><dt>Status</dt><dd>{{status}}</dd></dl>
    {{#hasDeliveries}}
    <table class="deliveries"><caption>Latest deliveries</caption><thead><tr><th scope="col">Time</th><th scope="col">Action</th><th scope="col">Attempt</th><th scope="col">Status</th><th scope="col">Latency</th><th scope="col">Error</th></tr></thead><tbody>
    {{#deliveries}}<tr><td>{{time}}</td><td>{{action}}</td><td>{{attempt}}</td><td>{{status}}</td><td>{{latency}}</td><td>{{error}}</td></tr>{{/deliveries}}
    </tbody></table>
    {{/hasDeliveries}}
    {{^deliveries}}<p>No deliveries yet.</p>{{/deliveries}}
    </section>
    {{/webhooks}}
    {{^webhooks}}<p id="no-webhooks">No webhooks.</p>{{/webhooks}}
    {{>footer}}
    """

    static let audit = """
    {{>header}}
    <p>The last {{hours}} hours, newest last ({{count}} entries).</p>
    <table id="audit"><thead><tr><th scope="col">Time</th><th scope="col">Actor</th><th scope="col">Address</th><th scope="col">Action</th><th scope="col">Target</th><th scope="col">Outcome</th><th scope="col">Detail</th></tr></thead><tbody>
    {{#entries}}<tr><td>{{time}}</td><td>{{actor}}</td><td>{{address}}</td><td>{{action}}</td><td>{{target}}</td><td>{{outcome}}</td><td>{{detail}}</td></tr>{{/entries}}
    </tbody></table>
    {{>footer}}
    """

    static let tasks = """
    {{>header}}
    {{#tasks}}
    <section class="task" aria-labelledby="task-{{index}}">
    <h2 id="task-{{index}}">{{name}}</h2>
    <dl class="facts"><dt>Status</dt><dd>{{status}}</dd><dt>Schedule</dt><dd>{{schedule}}</dd><dt>Pushes to</dt><dd>{{repositories}}</dd><dt>Created by</dt><dd>{{createdBy}}</dd></dl>
    {{#hasRuns}}
    <table class="runs"><caption>Latest runs of {{name}}</caption><thead><tr><th scope="col">Run</th><th scope="col">Status</th><th scope="col">Trigger</th><th scope="col">Queued</th><th scope="col">Finished</th><th scope="col">Pushed</th><th scope="col">Log</th></tr></thead><tbody>
    {{#runs}}<tr><td>{{id}}</td><td class="run-status">{{status}}{{#reason}}: {{reason}}{{/reason}}</td><td>{{trigger}}</td><td>{{queued}}</td><td>{{finished}}</td><td>{{#hasPushed}}<ul>{{#pushed}}<li>{{reference}} <span class="digest">{{digest}}</span></li>{{/pushed}}</ul>{{/hasPushed}}{{^pushed}}nothing{{/pushed}}</td><td><a href="/console/task-log?task={{urlTask}}&amp;run={{urlRun}}">log of {{id}}</a></td></tr>{{/runs}}
    </tbody></table>
    {{/hasRuns}}
    {{^runs}}<p>No runs yet.</p>{{/runs}}
    </section>
    {{/tasks}}
    {{^tasks}}<p id="no-tasks">No tasks.</p>{{/tasks}}
    {{>footer}}
    """

    static let taskLog = """
    {{>header}}
    <p>Run status: <span id="run-status">{{status}}</span>. At most the last {{limit}} of the log are shown. <a href="/console/tasks">Back to the tasks</a></p>
    {{#empty}}<p id="no-log">The run has written no log yet.</p>{{/empty}}
    {{^empty}}<pre id="run-log">{{log}}</pre>{{/empty}}
    {{>footer}}
    """

    static let replicas = """
    {{>header}}
    {{#unavailable}}<p id="no-replication">This server does not run replication.</p>{{/unavailable}}
    {{#hasReplicas}}
    <table id="replicas"><caption>Replicas and their health</caption><thead><tr><th scope="col">Location</th><th scope="col">Endpoint</th><th scope="col">Region endpoint</th><th scope="col">Health</th><th scope="col">Lag (events)</th><th scope="col">Lag (time)</th><th scope="col">Bytes pending</th><th scope="col">Last error</th></tr></thead><tbody>
    {{#replicas}}<tr><td>{{location}}</td><td>{{endpoint}}</td><td>{{regionEndpoint}}</td><td class="health">{{health}}</td><td>{{lagEvents}}</td><td>{{lagSeconds}}</td><td>{{bytesPending}}</td><td>{{#lastError}}{{lastError}}{{/lastError}}{{^lastError}}none{{/lastError}}</td></tr>{{/replicas}}
    </tbody></table>
    {{/hasReplicas}}
    {{^unavailable}}{{^replicas}}<p id="no-replicas">No replicas.</p>{{/replicas}}{{/unavailable}}
    {{>footer}}
    """

    static let scans = """
    {{>header}}
    {{#unavailable}}<p id="no-matching">This server does not match images against advisories.</p>{{/unavailable}}
    {{#chart}}
    <h2 id="scans-chart-title">Findings by severity across these images</h2>
    <svg id="scans-chart" role="img" aria-label="Findings by severity: {{summary}}" width="420" height="{{chartHeight}}" viewBox="0 0 420 {{chartHeight}}"><title>Findings by severity: {{summary}}</title>{{#bars}}<text x="0" y="{{textY}}">{{severity}}</text><rect x="90" y="{{y}}" width="{{width}}" height="16" fill="{{fill}}"></rect><text x="{{labelX}}" y="{{textY}}">{{count}}</text>{{/bars}}</svg>
    {{/chart}}
    {{#hasImages}}
    <table id="scans"><caption>{{count}} matched images of the repositories you may read, most findings first{{#truncated}} (the first {{limit}}){{/truncated}}</caption>
    <thead><tr><th scope="col">Repository</th><th scope="col">Image</th><th scope="col">Tags</th><th scope="col">Critical</th><th scope="col">High</th><th scope="col">Medium</th><th scope="col">Low</th><th scope="col">Other</th><th scope="col">Total</th><th scope="col">Matched</th></tr></thead>
    <tbody>
    {{#images}}<tr><td><a href="/console/repository?name={{urlRepository}}">{{repository}}</a></td><td><a class="digest" href="/console/image?name={{urlRepository}}&amp;digest={{digest}}">{{digest}}</a></td><td>{{tags}}</td><td class="critical">{{critical}}</td><td class="high">{{high}}</td><td class="medium">{{medium}}</td><td class="low">{{low}}</td><td>{{other}}</td><td class="total">{{total}}</td><td>{{matched}} (advisories v{{advisoryVersion}})</td></tr>{{/images}}
    </tbody>
    </table>
    {{/hasImages}}
    {{^unavailable}}{{^images}}<p id="no-scans">No matched image in the repositories you may read yet: the scanner inventories pushes and matches them against the advisory database.</p>{{/images}}{{/unavailable}}
    {{>footer}}
    """

    static let error = """
    {{>header}}
    <p class="error" role="alert" id="error-message">{{message}}</p>
    <p><a href="/console/repositories">Back to the repositories</a></p>
    {{>footer}}
    """

    static let all: [String: String] = [
        "header": header, "footer": footer, "login": login, "repositories": repositories, "repository": repository,
        "image": image, "referrer": referrer, "usage": usage, "tokens": tokens, "webhooks": webhooks, "audit": audit,
        "scans": scans, "error": error, "tasks": tasks, "taskLog": taskLog, "replicas": replicas,
    ]

    /// The compiled library (a template that does not parse is a programming error caught by the tests).
    static let library: MustacheLibrary = {
        var library = MustacheLibrary()
        for (name, text) in all {
            try! library.register(text, named: name)
        }
        return library
    }()

    static let stylesheet = """
    :root { color-scheme: light; }
    * { box-sizing: border-box; }
    body { margin: 0; font: 16px/1.5 system-ui, sans-serif; color: #1a1a1a; background: #fff; }
    a { color: #0645ad; }
    a:focus, button:focus, input:focus { outline: 3px solid #b45309; outline-offset: 2px; }
    .skip { position: absolute; left: -9999px; }
    .skip:focus { left: 8px; top: 8px; background: #fff; padding: 4px 8px; }
    .banner { display: flex; flex-wrap: wrap; align-items: center; gap: 12px; padding: 8px 16px; background: #f2f4f7; border-bottom: 1px solid #c8ccd2; }
    .brand { font-weight: 700; margin: 0; }
    nav ul { list-style: none; display: flex; flex-wrap: wrap; gap: 12px; margin: 0; padding: 0; }
    .signout { margin-left: auto; display: flex; gap: 8px; align-items: center; }
    main { padding: 16px; max-width: 1200px; }
    table { border-collapse: collapse; margin: 8px 0 16px; }
    th, td { border: 1px solid #c8ccd2; padding: 4px 8px; text-align: left; vertical-align: top; }
    caption { text-align: left; font-weight: 600; }
    .digest { font-family: ui-monospace, monospace; font-size: 13px; word-break: break-all; }
    .error { color: #9b1c1c; font-weight: 600; }
    .notice { color: #14532d; font-weight: 600; }
    .note { color: #374151; }
    .facts dt { font-weight: 600; }
    .facts dd { margin: 0 0 6px 16px; }
    button { font: inherit; padding: 4px 12px; border: 1px solid #1f5fa8; background: #1f5fa8; color: #fff; border-radius: 3px; cursor: pointer; }
    input { font: inherit; padding: 4px; border: 1px solid #6b7280; }
    label { font-weight: 600; margin-right: 8px; }
    .tree ul { margin-left: 16px; }

    """
}
