/* aidledger explorer: a read-only, no-login single-page app served by every
 * node. Vanilla ES2020, no dependencies, no external URLs. Everything shown
 * comes from the ledger, which anyone with a signing key writes to, so the
 * DOM is only ever built with createElement + textContent (no HTML is ever parsed from data),
 * ids go into URLs through encodeURIComponent, and links are only `#/...`
 * or, for the payment proofs' downloads, this node's own `/v1/` API. */
'use strict';
(() => {

// ------------------------------------------------------------------ strings

const I18N = {
  en: {
    'brand': 'aidledger explorer',
    'brand.sub': 'Aid fund explorer',
    'skip': 'Skip to content',
    'home': 'aidledger home',
    'search.label': 'Search the ledger',
    'search.placeholder': 'Block height, transaction or household id, program, application or organisation',
    'search.go': 'Search',
    'lang.switch': 'Language',
    'nav.label': 'Main',
    'nav.overview': 'Consortium',
    'nav.programs': 'Programs',
    'nav.applications': 'Applications',
    'nav.anomalies': 'Anomalies',
    'nav.regions': 'Regional reports',
    'footer': 'A read-only view of the ledger this node holds. Every figure comes from the chain; nothing on these pages can change it.',
    'loading': 'Loading…',
    'searching': 'Searching…',
    'err.title': 'The request could not be completed',
    'err.network': 'The node could not be reached',
    'err.badjson': 'The node sent an answer that could not be read',
    'err.internal': 'Something went wrong on this page',
    'err.code': 'Code',
    'problem.not-found': 'Not found',
    'problem.bad-request': 'The request is malformed',
    'problem.pruned': 'This node does not keep that part of history',
    'problem.internal': 'Internal error on the node',
    'problem.unavailable': 'The node is not available right now',
    'problem.busy': 'The node is busy; try again shortly',
    'problem.timeout': 'The node took too long to answer',
    'problem.rate-limited': 'Too many requests; try again shortly',
    'err.retry': 'Try again',
    'notfound.title': 'Page not found',
    'notfound.text': 'There is no page at this address.',
    'notfound.back': 'Go to the consortium overview',
    'search.title': 'Search',
    'search.none': 'Nothing matches “{q}”.',
    'search.hint': 'Search takes a block height, a 64-character transaction or household id, or the id of a program, application or organisation.',
    'yes': 'Yes',
    'no': 'No',
    'more': 'Load more',
    'showall': 'Show all {n} rows',
    'capped': 'Only the first {pages} pages were read ({n} records); there are more.',
    'print': 'Print',
    'empty': 'Nothing yet.',
    'height': 'Height',
    'time': 'Time',
    'id': 'ID',
    'status': 'Status',
    'amount': 'Amount',
    'org': 'Organisation',
    'program': 'Program',
    'region': 'Region',
    'currency': 'Currency',
    'recipient': 'Recipient',
    'note': 'Note',
    'kind': 'Kind',
    'colon': ': ',
    'sep': ', ',
    'paren': ' ({x})',
    'view': 'View',
    'details': 'Details',
    'subject': 'Subject',
    'period': 'Period',
    'period.n': 'Period {n}',
    'block.n': 'Block #{n}',
    'release.n': 'Release #{n}',
    'hh.short': 'Household {id}',
    'validator.n': 'Validator #{n}',
    'overview.title': 'Consortium overview',
    'node.title': 'This node',
    'st.chain': 'Chain',
    'st.org': 'Run by',
    'st.height': 'Height',
    'st.hash': 'Latest block hash',
    'st.root': 'State root',
    'st.view': 'Consensus view',
    'st.leader': 'Leader',
    'st.role': 'Role',
    'st.validator': 'Validator',
    'st.observer': 'Observer',
    'st.voting': 'Voting',
    'st.peers': 'Peers',
    'st.mempool': 'Pending transactions',
    'st.last': 'Last block',
    'st.next': 'Next block due',
    'st.base': 'History kept from height',
    'st.modules': 'Contract modules',
    'st.upgrade': 'Scheduled upgrade',
    'st.upgrade.at': '{modules} from height {h}',
    'st.upgrade.missing': 'This node lacks: {m}',
    'st.genesis': 'Genesis hash',
    'st.key': 'Node key',
    'st.peer': 'Peer id',
    'strip.offline': 'Node unreachable',
    'strip.live': 'Live',
    'strip.ago': 'last block {t}',
    'orgs.title': 'Member organisations',
    'orgs.name': 'Name',
    'orgs.none': 'No organisations.',
    'blocks.title': 'Latest blocks',
    'blocks.proposer': 'Proposer',
    'blocks.txs': 'Transactions',
    'blocks.cert': 'Commit certificate',
    'blocks.none': 'No blocks yet.',
    'cert.summary': 'view {v} · {n} signers:',
    'cert.none': 'not yet certified',
    'block.prev': '← Block #{n}',
    'block.next': 'Block #{n} →',
    'block.pager': 'Neighbouring blocks',
    'block.header': 'Header',
    'block.hash': 'Block hash',
    'block.parent': 'Parent block',
    'block.time': 'Timestamp',
    'block.proposer': 'Proposer',
    'block.view': 'Consensus view',
    'block.txroot': 'Transaction root',
    'block.stateroot': 'State root',
    'block.vset': 'Validator set',
    'block.nextvset': 'Next validator set',
    'block.vsetchange': 'changes after this block',
    'block.version': 'Format version',
    'block.chain': 'Chain',
    'block.parentcert': 'Certificate of the parent',
    'block.parentcert.text': 'view {v}, {n} signatures',
    'block.txs': 'Transactions',
    'block.notxs': 'This block holds no transactions.',
    'tx.kind': 'Kind',
    'tx.signer': 'Signer',
    'tx.nonce': 'Nonce',
    'tx.applied': 'Outcome',
    'outcome.applied': 'Applied',
    'outcome.rejected': 'Rejected',
    'cert.title': 'Commit certificate',
    'cert.text': 'Signed by {n} validators in view {v}.',
    'cert.validator': 'Validator',
    'cert.time': 'Vote time',
    'cert.sig': 'Signature',
    'cert.missing': 'This node holds no certificate for this block yet.',
    'programs.title': 'Fund programs',
    'programs.none': 'No programs yet.',
    'programs.alloc': 'Where the money is',
    'prog.owner': 'Managed by',
    'prog.funders': 'Funding organisations',
    'prog.ceiling': 'Budget ceiling',
    'prog.policy': 'Approval policy',
    'prog.policy.text': '{k} of {n}:',
    'prog.scope': 'Region scope',
    'prog.created': 'Created at',
    'prog.apps': 'Applications to this program',
    'prog.unit': 'Currency',
    'prog.decimals': '{n} decimal places',
    'prog.balances': 'Balances',
    'prog.conserved': 'Deposited = available + committed + released + returned: the books balance.',
    'prog.notconserved': 'The balances do not add up: deposited ≠ available + committed + released + returned.',
    'prog.flow': 'Money flow',
    'prog.flow.none': 'No money has been deposited yet.',
    'prog.flow.note': 'Band widths are proportional to the amounts.',
    'prog.plans': 'Disbursement plans',
    'minor.units': '{n} (minor units)',
    'prog.plans.none': 'No plans yet.',
    'prog.plans.fallback': 'This node does not yet report condition checks; plans are shown without them.',
    'prog.releases': 'Releases (disbursements)',
    'prog.releases.none': 'No releases yet.',
    'prog.ledger': 'Ledger of money movements',
    'prog.ledger.none': 'No money movements yet.',
    'prog.anomalies': 'Anomalies',
    'prog.anomalies.none': 'No anomalies about this program.',
    'prog.trace.capped': 'The trace is long: only its first {n} pages were read, so the lists below are incomplete.',
    'bal.deposited': 'Deposited',
    'bal.available': 'Available',
    'bal.committed': 'Committed',
    'bal.released': 'Released',
    'bal.settled': 'Settled',
    'bal.returned': 'Returned',
    'bal.unsettled': 'Released, awaiting settlement',
    'flow.plans': 'Committed to plans',
    'flow.ent': 'Paid as subsidies',
    'flow.pending': 'Tranches still waiting',
    'plan.title': 'Plan {id}',
    'plan.app': 'Application',
    'plan.created': 'Created at',
    'plan.total': 'Total',
    'plan.approved': 'Approved: its tranches release when their conditions hold.',
    'plan.needs': 'Needs {n} more approval(s) before any tranche can release ({have} of {need}).',
    'plan.approvals': 'Approved by',
    'tr.id': 'Tranche',
    'tr.condition': 'Condition',
    'tr.why': 'Why not released yet',
    'tr.holds': 'holds',
    'tr.nothold': 'does not hold',
    'tr.will': 'The condition holds: it releases at the next block.',
    'tr.held': 'The condition holds, but an open anomaly holds the money back.',
    'tr.waitapproval': 'The condition holds; the plan still needs its approvals.',
    'tr.noeval': 'No condition check available.',
    'rel.id': 'Release',
    'rel.source': 'Source',
    'rel.settled': 'Settled?',
    'rel.overdue': 'Overdue?',
    'settle.confirmed': 'Settled',
    'settle.disputed': 'Disputed',
    'settle.none': 'Awaiting settlement',
    'overdue.yes': 'Overdue',
    'src.tranche': 'Plan {plan} · tranche {tranche}',
    'src.ent': 'Subsidy {ent} · period {period}',
    'led.seq': 'No.',
    'led.flow': 'Movement',
    'led.from': 'From',
    'led.to': 'To',
    'led.ref': 'Reference',
    'led.tx': 'Transaction',
    'led.auto': 'by the contracts',
    'party.program': 'Program pool {id}',
    'anom.title': 'Anomalies',
    'anom.filter': 'Show',
    'anom.all': 'All',
    'anom.openonly': 'Open only',
    'anom.none': 'No anomalies.',
    'anom.raised': 'Raised',
    'anom.resolution': 'Resolution',
    'anom.resolvedby': 'Resolved by {org} at block #{h}',
    'anom.firstreview': 'First review by {org} at block #{h}; a second person must confirm.',
    'anom.holding': 'Payments concerned are held while it is open.',
    'anom.count': 'On this page: {open} open, {resolved} resolved.',
    'ak.conflict': '“{claim}”: {a} attested {va}, {b} attested {vb}',
    'ak.dup': 'Registered by {a} and again by {b}',
    'ak.inelig': 'Program {p}: {reason}',
    'ak.mismatch': 'Release #{r}: released {e}, bank reported {g}',
    'ak.overdue': 'Release #{r}, released {t}; deadline {d}',
    'ak.cross': 'Check {rule}: {desc}',
    'ak.amount': 'Amount concerned: {a}',
    'dur.d': '{n} days',
    'dur.h': '{n} hours',
    'dur.m': '{n} minutes',
    'dur.s': '{n} seconds',
    'apps.title': 'Project applications',
    'apps.filter': 'Program',
    'apps.allprograms': 'All programs',
    'apps.none': 'No applications.',
    'app.title': 'Application {id}',
    'app.applicant': 'Applicant',
    'app.requested': 'Requested',
    'app.purpose': 'Purpose',
    'app.doc': 'Documents (SHA-256)',
    'app.plan': 'Plan',
    'app.submitted': 'Submitted at',
    'app.votes': 'Approval votes',
    'app.votes.count': '{a} approve · {r} reject',
    'app.novotes': 'No votes yet.',
    'app.vote': 'Decision',
    'app.voter': 'Signed by',
    'vote.approve': 'Approved',
    'vote.reject': 'Rejected',
    'vote.waiting': 'Not voted yet',
    'app.policy.met': 'The approval threshold is met: {have} of {need}.',
    'app.policy.needs': 'Still needs {n} more approval(s) ({have} of {need}) from among:',
    'app.policy.unknown': 'The program’s approval policy is not available.',
    'app.attest': 'Attestations',
    'app.attest.none': 'No attestations.',
    'app.money': 'Releases and ledger',
    'att.claim': 'Claim',
    'att.value': 'Value',
    'att.by': 'Attested by',
    'hh.title': 'Household file',
    'hh.id': 'Salted id',
    'hh.regby': 'Registered by',
    'hh.regat': 'Registered at',
    'hh.updated': 'Last updated at',
    'hh.payments': 'Payments',
    'hh.none': 'No payments yet.',
    'hh.received': 'Received in total',
    'hh.settledtotal': 'Confirmed paid by the bank',
    'hh.perperiod': 'Payments per period',
    'hh.count': 'Payments',
    'hh.noperiod': 'Other payments',
    'hh.holds': 'Holds and anomalies',
    'hh.held': 'Payments to this household are held until its open anomalies are resolved.',
    'hh.noanom': 'No anomalies about this household.',
    'hh.privacy': 'The ledger keeps no name, ID number or other personal data; the id is a salted hash.',
    'regions.title': 'Regional reports',
    'regions.asof': 'As of block #{h} ({time})',
    'regions.none': 'No regions yet.',
    'regions.chart': 'Released and settled by region',
    'reg.code': 'Region',
    'reg.releases': 'Releases',
    'reg.registered': 'Households registered',
    'reg.reached': 'Households reached',
    'reg.title': 'Regional report: {code}',
    'reg.totals': 'Totals',
    'reg.rows': 'By region code',
    'reg.up': 'Part of',
    'reg.nomoney': 'no money yet',
    'org.title': 'Organisation {id}',
    'org.name': 'Name',
    'org.kind': 'Kind',
    'org.programs': 'Programs it manages or funds',
    'org.programs.none': 'None.',
    'org.role': 'Role',
    'org.role.owner': 'Manages',
    'org.role.funder': 'Funds',
    'org.thisnode': 'This node is run by this organisation.',
    'tx.title': 'Transaction',
    'tx.block': 'Block',
    'tx.index': 'Position in block',
    'tx.outcome': 'Outcome',
    'tx.reason': 'Reason',
    'tx.next': 'What to do',
    'tx.events': 'What it changed',
    'tx.noevents': 'No changes recorded.',
    'tx.unknown': 'This node has not seen this transaction, or has evicted it from its mempool.',
    'chart.balances': 'Balances of {p}',
    'chart.flow': 'Money flow of {p}',
    'chart.periods': 'Payments per period',
    'proof.title': 'Payment proofs',
    'proof.intro': 'Each proof can be checked offline, with no node and no network, by {cmd}.',
    'proof.none': 'No entitlement payments to prove',
    'proof.download': 'Download proof',
    'proof.receipt': 'Printable receipt',
    'receipt.title': 'Payment receipt',
    'receipt.household': 'Household (salted id)',
    'receipt.entitlement': 'Subsidy',
    'receipt.settled': 'Settled by the bank',
    'receipt.settled.at': 'Yes, at block {h}',
    'receipt.unsettled': 'Not yet',
    'receipt.qr': 'QR code holding the receipt code',
    'receipt.code': 'Receipt code',
    'receipt.caption': 'The QR code holds this receipt code; {cmd} checks a proof file against it.',
  },
  'zh-CN': {
    'brand': 'aidledger 资金链上查询',
    'brand.sub': '扶贫资金区块链浏览器',
    'skip': '跳到正文',
    'home': 'aidledger 首页',
    'search.label': '查询账本',
    'search.placeholder': '区块高度、交易或农户编号、资金项目、项目申请或机构',
    'search.go': '查询',
    'lang.switch': '语言',
    'nav.label': '主导航',
    'nav.overview': '联盟概况',
    'nav.programs': '资金项目',
    'nav.applications': '项目申请',
    'nav.anomalies': '异常预警',
    'nav.regions': '县级报告',
    'footer': '本页面只读展示本节点保存的账本数据。所有数字均来自区块链，任何人都无法通过本页面修改。',
    'loading': '正在加载…',
    'searching': '正在查询…',
    'err.title': '请求未能完成',
    'err.network': '无法连接节点',
    'err.badjson': '节点返回的数据无法读取',
    'err.internal': '页面出现内部错误',
    'err.code': '错误代码',
    'problem.not-found': '未找到该记录',
    'problem.bad-request': '请求格式有误',
    'problem.pruned': '本节点不保存该段历史数据',
    'problem.internal': '节点内部错误',
    'problem.unavailable': '节点暂不可用',
    'problem.busy': '节点繁忙，请稍后再试',
    'problem.timeout': '节点响应超时',
    'problem.rate-limited': '请求过于频繁，请稍后再试',
    'err.retry': '重试',
    'notfound.title': '页面不存在',
    'notfound.text': '此地址没有对应的页面。',
    'notfound.back': '返回联盟概况',
    'search.title': '查询',
    'search.none': '没有找到与“{q}”相符的记录。',
    'search.hint': '可输入区块高度、64 位交易编号或农户编号，或资金项目、项目申请、机构的编号。',
    'yes': '是',
    'no': '否',
    'more': '加载更多',
    'showall': '显示全部 {n} 行',
    'capped': '只读取了前 {pages} 页（{n} 条记录），后面还有更多。',
    'print': '打印',
    'empty': '暂无记录。',
    'height': '高度',
    'time': '时间',
    'id': '编号',
    'status': '状态',
    'amount': '金额',
    'org': '机构',
    'program': '资金项目',
    'region': '地区',
    'currency': '币种',
    'recipient': '收款方',
    'note': '说明',
    'kind': '类型',
    'colon': '：',
    'sep': '、',
    'paren': '（{x}）',
    'view': '视图',
    'details': '详情',
    'subject': '对象',
    'period': '期次',
    'period.n': '第 {n} 期',
    'block.n': '区块 #{n}',
    'release.n': '拨付 #{n}',
    'hh.short': '农户 {id}',
    'validator.n': '验证节点 #{n}',
    'overview.title': '联盟概况',
    'node.title': '本节点',
    'st.chain': '链标识',
    'st.org': '运行机构',
    'st.height': '区块高度',
    'st.hash': '最新区块哈希',
    'st.root': '状态根',
    'st.view': '共识视图',
    'st.leader': '当前主节点',
    'st.role': '节点角色',
    'st.validator': '验证节点',
    'st.observer': '观察节点',
    'st.voting': '参与共识投票',
    'st.peers': '连接节点',
    'st.mempool': '待打包交易',
    'st.last': '最新出块',
    'st.next': '下一区块预计',
    'st.base': '保存历史起始高度',
    'st.modules': '合约模块',
    'st.upgrade': '已排期的升级',
    'st.upgrade.at': '{modules}，自高度 {h} 起',
    'st.upgrade.missing': '本节点缺少：{m}',
    'st.genesis': '创世区块哈希',
    'st.key': '节点公钥',
    'st.peer': '网络标识',
    'strip.offline': '节点无法连接',
    'strip.live': '运行中',
    'strip.ago': '最新出块 {t}',
    'orgs.title': '成员机构',
    'orgs.name': '名称',
    'orgs.none': '暂无机构。',
    'blocks.title': '最新区块',
    'blocks.proposer': '出块机构',
    'blocks.txs': '交易数',
    'blocks.cert': '提交证书',
    'blocks.none': '尚无区块。',
    'cert.summary': '视图 {v} · {n} 家签名：',
    'cert.none': '尚未取得证书',
    'block.prev': '← 区块 #{n}',
    'block.next': '区块 #{n} →',
    'block.pager': '相邻区块',
    'block.header': '区块头',
    'block.hash': '区块哈希',
    'block.parent': '上一区块',
    'block.time': '出块时间',
    'block.proposer': '出块节点',
    'block.view': '共识视图',
    'block.txroot': '交易根',
    'block.stateroot': '状态根',
    'block.vset': '验证节点集合',
    'block.nextvset': '下一验证节点集合',
    'block.vsetchange': '本区块后变更',
    'block.version': '格式版本',
    'block.chain': '链标识',
    'block.parentcert': '上一区块的证书',
    'block.parentcert.text': '视图 {v}，{n} 个签名',
    'block.txs': '交易',
    'block.notxs': '本区块不含交易。',
    'tx.kind': '类型',
    'tx.signer': '签名账户',
    'tx.nonce': '序号',
    'tx.applied': '执行结果',
    'outcome.applied': '已执行',
    'outcome.rejected': '已拒绝',
    'cert.title': '提交证书',
    'cert.text': '由 {n} 个验证节点在视图 {v} 中签署。',
    'cert.validator': '验证节点',
    'cert.time': '投票时间',
    'cert.sig': '签名',
    'cert.missing': '本节点尚未保存该区块的提交证书。',
    'programs.title': '资金项目',
    'programs.none': '尚无资金项目。',
    'programs.alloc': '资金去向',
    'prog.owner': '管理机构',
    'prog.funders': '出资机构',
    'prog.ceiling': '预算上限',
    'prog.policy': '审批规则',
    'prog.policy.text': '以下 {n} 家机构中须有 {k} 家批准：',
    'prog.scope': '覆盖地区',
    'prog.created': '创建于',
    'prog.apps': '本项目的申请',
    'prog.unit': '币种',
    'prog.decimals': '{n} 位小数',
    'prog.balances': '资金余额',
    'prog.conserved': '入账 = 可用 + 已承诺 + 已拨付 + 已退回：账目平衡。',
    'prog.notconserved': '余额不平衡：入账 ≠ 可用 + 已承诺 + 已拨付 + 已退回。',
    'prog.flow': '资金流向',
    'prog.flow.none': '尚无资金入账。',
    'prog.flow.note': '色带宽度与金额成正比。',
    'prog.plans': '拨付计划',
    'minor.units': '{n}（最小货币单位）',
    'prog.plans.none': '尚无拨付计划。',
    'prog.plans.fallback': '本节点暂不提供拨付条件核查结果，以下计划不含条件判断。',
    'prog.releases': '拨付记录',
    'prog.releases.none': '尚无拨付。',
    'prog.ledger': '资金流水账',
    'prog.ledger.none': '尚无资金变动。',
    'prog.anomalies': '异常',
    'prog.anomalies.none': '本项目没有异常。',
    'prog.trace.capped': '追踪记录较多：只读取了前 {n} 页，以下列表不完整。',
    'bal.deposited': '入账资金',
    'bal.available': '可用余额',
    'bal.committed': '已承诺',
    'bal.released': '已拨付',
    'bal.settled': '已结算',
    'bal.returned': '已退回',
    'bal.unsettled': '已拨付待结算',
    'flow.plans': '纳入拨付计划',
    'flow.ent': '按补贴标准发放',
    'flow.pending': '待拨付批次',
    'plan.title': '拨付计划 {id}',
    'plan.app': '对应申请',
    'plan.created': '创建于',
    'plan.total': '合计',
    'plan.approved': '已获批准：各批次在条件满足时自动拨付。',
    'plan.needs': '还需 {n} 家机构审批后方可拨付（已 {have} 家，需 {need} 家）。',
    'plan.approvals': '审批机构',
    'tr.id': '批次',
    'tr.condition': '拨付条件',
    'tr.why': '尚未拨付的原因',
    'tr.holds': '已满足',
    'tr.nothold': '未满足',
    'tr.will': '条件已满足，将在下一个区块自动拨付。',
    'tr.held': '条件已满足，但存在未处理的异常，资金暂缓拨付。',
    'tr.waitapproval': '条件已满足，但拨付计划尚待审批。',
    'tr.noeval': '暂无条件核查结果。',
    'rel.id': '拨付编号',
    'rel.source': '来源',
    'rel.settled': '是否结算',
    'rel.overdue': '是否逾期',
    'settle.confirmed': '已结算',
    'settle.disputed': '金额有争议',
    'settle.none': '待结算',
    'overdue.yes': '结算逾期',
    'src.tranche': '计划 {plan} · 批次 {tranche}',
    'src.ent': '补贴 {ent} · 第 {period} 期',
    'led.seq': '序号',
    'led.flow': '资金变动',
    'led.from': '付款方',
    'led.to': '收款方',
    'led.ref': '关联',
    'led.tx': '交易',
    'led.auto': '合约自动执行',
    'party.program': '项目资金池 {id}',
    'anom.title': '异常预警',
    'anom.filter': '显示',
    'anom.all': '全部',
    'anom.openonly': '仅未处理',
    'anom.none': '没有异常。',
    'anom.raised': '发现于',
    'anom.resolution': '处理情况',
    'anom.resolvedby': '{org} 于区块 #{h} 处理',
    'anom.firstreview': '{org} 已于区块 #{h} 初审，须由另一人复核。',
    'anom.holding': '未处理期间，相关款项暂缓发放。',
    'anom.count': '本页：未处理 {open} 条，已处理 {resolved} 条。',
    'ak.conflict': '“{claim}”：{a} 核验为 {va}，{b} 核验为 {vb}',
    'ak.dup': '先由 {a} 登记，又由 {b} 重复登记',
    'ak.inelig': '资金项目 {p}：{reason}',
    'ak.mismatch': '拨付 #{r}：拨付金额 {e}，银行报结算 {g}',
    'ak.overdue': '拨付 #{r}，拨付于 {t}；结算期限 {d}',
    'ak.cross': '比对规则 {rule}：{desc}',
    'ak.amount': '涉及金额：{a}',
    'dur.d': '{n} 天',
    'dur.h': '{n} 小时',
    'dur.m': '{n} 分钟',
    'dur.s': '{n} 秒',
    'apps.title': '项目申请',
    'apps.filter': '资金项目',
    'apps.allprograms': '全部资金项目',
    'apps.none': '暂无项目申请。',
    'app.title': '项目申请 {id}',
    'app.applicant': '申请单位',
    'app.requested': '申请金额',
    'app.purpose': '用途',
    'app.doc': '申请材料（SHA-256 哈希）',
    'app.plan': '拨付计划',
    'app.submitted': '提交于',
    'app.votes': '审批意见',
    'app.votes.count': '同意 {a} · 驳回 {r}',
    'app.novotes': '尚无审批意见。',
    'app.vote': '意见',
    'app.voter': '签署账户',
    'vote.approve': '同意',
    'vote.reject': '驳回',
    'vote.waiting': '尚未表态',
    'app.policy.met': '已达到审批要求：{have} / {need} 家。',
    'app.policy.needs': '还需 {n} 家机构批准（已 {have} 家，需 {need} 家），可由以下机构审批：',
    'app.policy.unknown': '无法获取该资金项目的审批规则。',
    'app.attest': '部门核验',
    'app.attest.none': '暂无核验记录。',
    'app.money': '拨付与流水',
    'att.claim': '核验事项',
    'att.value': '核验结果',
    'att.by': '核验机构',
    'hh.title': '农户档案',
    'hh.id': '加盐编号',
    'hh.regby': '登记机构',
    'hh.regat': '登记于',
    'hh.updated': '最近更新于',
    'hh.payments': '收款记录',
    'hh.none': '尚无收款记录。',
    'hh.received': '累计收款',
    'hh.settledtotal': '银行已确认支付',
    'hh.perperiod': '按期收款',
    'hh.count': '笔数',
    'hh.noperiod': '其他拨付',
    'hh.holds': '暂缓与异常',
    'hh.held': '该农户存在未处理的异常，处理完毕前相关款项暂缓发放。',
    'hh.noanom': '该农户没有异常记录。',
    'hh.privacy': '账本不保存姓名、身份证号等任何个人信息；编号为加盐哈希值。',
    'regions.title': '县级报告',
    'regions.asof': '截至区块 #{h}（{time}）',
    'regions.none': '暂无地区数据。',
    'regions.chart': '各地区拨付与结算',
    'reg.code': '地区',
    'reg.releases': '拨付笔数',
    'reg.registered': '登记农户',
    'reg.reached': '已受益农户',
    'reg.title': '地区报告：{code}',
    'reg.totals': '合计',
    'reg.rows': '分地区明细',
    'reg.up': '上级地区',
    'reg.nomoney': '尚无资金',
    'org.title': '机构 {id}',
    'org.name': '名称',
    'org.kind': '机构类型',
    'org.programs': '管理或出资的资金项目',
    'org.programs.none': '无。',
    'org.role': '角色',
    'org.role.owner': '管理',
    'org.role.funder': '出资',
    'org.thisnode': '本节点由该机构运行。',
    'tx.title': '交易',
    'tx.block': '所在区块',
    'tx.index': '区块内序号',
    'tx.outcome': '执行结果',
    'tx.reason': '原因',
    'tx.next': '处理建议',
    'tx.events': '产生的变更',
    'tx.noevents': '没有记录变更。',
    'tx.unknown': '本节点未见过此交易，或已将其移出交易池。',
    'chart.balances': '{p} 的资金余额',
    'chart.flow': '{p} 的资金流向',
    'chart.periods': '按期收款',
    'proof.title': '支付证明',
    'proof.intro': '每份证明都可离线核验，无需节点，也无需联网：{cmd}',
    'proof.none': '暂无可证明的补贴支付',
    'proof.download': '下载证明',
    'proof.receipt': '可打印回执',
    'receipt.title': '支付回执',
    'receipt.household': '农户（加盐编号）',
    'receipt.entitlement': '补贴',
    'receipt.settled': '银行结算',
    'receipt.settled.at': '已结算，区块 {h}',
    'receipt.unsettled': '尚未结算',
    'receipt.qr': '含回执码的二维码',
    'receipt.code': '回执码',
    'receipt.caption': '二维码内容即此回执码；可用 {cmd} 据此核验证明文件。',
  },
};

// Labels of the ledger's enum values; an unknown value shows as it is.
const ENUMS = {
  en: {
    orgkind: { 'bank': 'Bank', 'development-bank': 'Development bank', 'poverty-office': 'Poverty alleviation office', 'finance-bureau': 'Finance bureau', 'auditor': 'Auditor', 'implementing-unit': 'Implementing unit' },
    status: { active: 'Active', suspended: 'Suspended', inactive: 'Inactive', open: 'Open', closed: 'Closed', resolved: 'Resolved' },
    appstatus: { submitted: 'Submitted', approved: 'Approved', rejected: 'Rejected', funded: 'Funded', completed: 'Completed', cancelled: 'Cancelled' },
    anomstatus: { open: 'Open', resolved: 'Resolved' },
    tranche: { pending: 'Waiting', held: 'Held', released: 'Released', cancelled: 'Cancelled' },
    txstate: { pending: 'Pending (in the mempool)', committed: 'Committed', unknown: 'Unknown to this node' },
    flow: { 'incoming-funds': 'Deposit', 'commitment': 'Commitment', 'disbursement': 'Disbursement', 'expenditure': 'Settlement', 'commitment-cancelled': 'Commitment cancelled', 'funds-returned': 'Funds returned' },
    anomaly: { 'conflicting-attestation': 'Conflicting attestations', 'duplicate-household': 'Household registered twice', 'ineligible-recipient': 'Ineligible recipient', 'settlement-mismatch': 'Settlement amount differs', 'settlement-overdue': 'Settlement overdue', 'cross-check': 'Cross-department check' },
    due: { now: 'now', tranche: 'a tranche date', 'entitlement-period': 'a subsidy period', 'settlement-deadline': 'a settlement deadline', heartbeat: 'heartbeat', activation: 'validator change' },
    txkind: { 'gov-propose': 'Governance proposal', 'gov-approve': 'Governance approval', 'create-program': 'Create program', 'deposit': 'Deposit', 'submit-application': 'Submit application', 'approve-application': 'Approve application', 'reject-application': 'Reject application', 'create-plan': 'Create plan', 'attest': 'Attestation', 'register-household': 'Register household', 'update-household': 'Update household', 'set-entitlement': 'Set subsidy', 'settle': 'Settlement', 'cancel-tranche': 'Cancel tranche', 'resolve-anomaly': 'Resolve anomaly', 'close-program': 'Close program', 'approve-plan': 'Approve plan' },
    evfield: { active: 'active', amount: 'amount', anomaly: 'anomaly', application: 'application', approvals: 'approvals', approvals_needed: 'approvals needed', approve: 'approve', approved: 'approved', at_height: 'at height', claim: 'claim', code: 'code', entitlement: 'subsidy', from: 'from', hash: 'hash', household: 'household', id: 'id', key: 'key', modules: 'modules', name: 'name', needed: 'needed', new: 'new', old: 'old', org: 'organisation', period: 'period', plan: 'plan', program: 'program', proposal: 'proposal', reason: 'reason', release: 'release', status: 'status', subject: 'subject', through: 'through', to: 'to', total: 'total', tranche: 'tranche' },
    event: { 'money': 'Money movement', 'proposal-created': 'Proposal created', 'proposal-approved': 'Proposal approved', 'proposal-executed': 'Proposal executed', 'org-changed': 'Organisation changed', 'account-changed': 'Account changed', 'key-rotated': 'Key rotated', 'validator-set-changed': 'Validator set changed', 'validator-set-scheduled': 'Validator change scheduled', 'node-added': 'Node added', 'node-removed': 'Node removed', 'param-changed': 'Parameter changed', 'cross-check-changed': 'Cross-check changed', 'program-created': 'Program created', 'program-closed': 'Program closed', 'application-submitted': 'Application submitted', 'application-voted': 'Application vote', 'application-status-changed': 'Application status changed', 'plan-created': 'Plan created', 'plan-approved': 'Plan approved', 'tranche-held': 'Tranche held', 'household-registered': 'Household registered', 'household-updated': 'Household updated', 'attested': 'Attested', 'entitlement-set': 'Subsidy set', 'entitlement-held': 'Subsidy payment held', 'entitlement-ended': 'Subsidy ended', 'entitlement-forfeited': 'Subsidy periods forfeited', 'settled': 'Settled', 'anomaly-raised': 'Anomaly raised', 'anomaly-resolved': 'Anomaly resolved', 'anomaly-reviewed': 'Anomaly first review', 'upgrade-scheduled': 'Upgrade scheduled', 'upgrade-cancelled': 'Upgrade cancelled', 'modules-upgraded': 'Modules upgraded' },
  },
  'zh-CN': {
    orgkind: { 'bank': '银行', 'development-bank': '政策性开发银行', 'poverty-office': '扶贫（乡村振兴）部门', 'finance-bureau': '财政局', 'auditor': '审计机关', 'implementing-unit': '项目实施单位' },
    status: { active: '正常', suspended: '已暂停', inactive: '已注销', open: '进行中', closed: '已关闭', resolved: '已处理' },
    appstatus: { submitted: '已提交', approved: '已批准', rejected: '已驳回', funded: '已安排资金', completed: '已完成', cancelled: '已撤销' },
    anomstatus: { open: '未处理', resolved: '已处理' },
    tranche: { pending: '待拨付', held: '暂缓拨付', released: '已拨付', cancelled: '已撤销' },
    txstate: { pending: '待打包', committed: '已上链', unknown: '本节点未见此交易' },
    flow: { 'incoming-funds': '资金入账', 'commitment': '承诺拨款', 'disbursement': '拨付', 'expenditure': '结算支出', 'commitment-cancelled': '撤销承诺', 'funds-returned': '资金退回' },
    anomaly: { 'conflicting-attestation': '部门核验结果冲突', 'duplicate-household': '农户重复登记', 'ineligible-recipient': '收款对象不符合条件', 'settlement-mismatch': '结算金额不符', 'settlement-overdue': '结算逾期', 'cross-check': '跨部门比对预警' },
    due: { now: '立即', tranche: '拨付批次的约定日期', 'entitlement-period': '补贴发放周期', 'settlement-deadline': '结算期限', heartbeat: '心跳区块', activation: '验证节点变更' },
    txkind: { 'gov-propose': '治理提案', 'gov-approve': '治理审批', 'create-program': '创建资金项目', 'deposit': '资金入账', 'submit-application': '提交项目申请', 'approve-application': '批准项目申请', 'reject-application': '驳回项目申请', 'create-plan': '创建拨付计划', 'attest': '部门核验', 'register-household': '农户登记', 'update-household': '更新农户档案', 'set-entitlement': '设定补贴发放', 'settle': '结算确认', 'cancel-tranche': '撤销拨付批次', 'resolve-anomaly': '处理异常', 'close-program': '关闭资金项目', 'approve-plan': '审批拨付计划' },
    evfield: { active: '是否有效', amount: '金额', anomaly: '异常', application: '项目申请', approvals: '审批数', approvals_needed: '所需审批数', approve: '同意', approved: '已批准', at_height: '生效高度', claim: '核验事项', code: '代码', entitlement: '补贴', from: '自', hash: '哈希', household: '农户', id: '编号', key: '密钥', modules: '模块', name: '名称', needed: '所需', new: '新值', old: '原值', org: '机构', period: '期次', plan: '拨付计划', program: '资金项目', proposal: '提案', reason: '原因', release: '拨付', status: '状态', subject: '对象', through: '截至', to: '至', total: '总额', tranche: '拨付批次' },
    event: { 'money': '资金变动', 'proposal-created': '治理提案已创建', 'proposal-approved': '治理提案获批', 'proposal-executed': '治理提案已执行', 'org-changed': '机构信息变更', 'account-changed': '账户变更', 'key-rotated': '密钥轮换', 'validator-set-changed': '验证节点集合变更', 'validator-set-scheduled': '验证节点变更已排期', 'node-added': '新增节点', 'node-removed': '移除节点', 'param-changed': '参数变更', 'cross-check-changed': '比对规则变更', 'program-created': '资金项目已创建', 'program-closed': '资金项目已关闭', 'application-submitted': '项目申请已提交', 'application-voted': '项目申请审批', 'application-status-changed': '项目申请状态变更', 'plan-created': '拨付计划已创建', 'plan-approved': '拨付计划获批', 'tranche-held': '拨付批次暂缓', 'household-registered': '农户已登记', 'household-updated': '农户档案已更新', 'attested': '部门核验', 'entitlement-set': '补贴已设定', 'entitlement-held': '补贴暂缓发放', 'entitlement-ended': '补贴发放结束', 'entitlement-forfeited': '补贴期次作废', 'settled': '已结算', 'anomaly-raised': '发现异常', 'anomaly-resolved': '异常已处理', 'anomaly-reviewed': '异常已初审', 'upgrade-scheduled': '合约升级已排期', 'upgrade-cancelled': '合约升级已取消', 'modules-upgraded': '合约模块已升级' },
  },
};

// ------------------------------------------------------------------ settings

const STORE_KEY = 'aidledger.lang';
const LIST_PAGE_CAP = 20;     // most pages read when a page follows `next`
const ROWS_SHOWN = 300;       // rows a table shows before "show all"
const STRIP_MS = 5000;        // status strip refresh
const CACHE_MS = 15000;       // programs and organisations lookups

let lang = pickLang();

function pickLang() {
  let saved = null;
  try { saved = window.localStorage.getItem(STORE_KEY); } catch (e) { saved = null; }
  if (saved === 'zh-CN' || saved === 'en') return saved;
  const prefs = (navigator.languages && navigator.languages.length) ? navigator.languages : [navigator.language || 'en'];
  return /^zh/i.test(String(prefs[0] || '')) ? 'zh-CN' : 'en';
}

function t(key, vars) {
  let s = I18N[lang][key];
  if (s === undefined) s = I18N.en[key];
  if (s === undefined) s = key;
  if (vars) s = s.replace(/\{(\w+)\}/g, (m, k) => (vars[k] === undefined || vars[k] === null ? m : String(vars[k])));
  return s;
}

/** Like t(), but the variables may be nodes: returns text and nodes. */
function tn(key, vars) {
  const out = [];
  const text = t(key);
  let last = 0;
  text.replace(/\{(\w+)\}/g, (m, k, at) => {
    out.push(text.slice(last, at));
    out.push(vars && vars[k] !== undefined && vars[k] !== null ? vars[k] : m);
    last = at + m.length;
    return m;
  });
  out.push(text.slice(last));
  return out;
}

function L(group, value) {
  const v = String(value === undefined || value === null ? '' : value);
  const g = ENUMS[lang][group];
  return (g && Object.prototype.hasOwnProperty.call(g, v)) ? g[v] : v;
}

// ------------------------------------------------------------------ DOM helpers

const SVGNS = 'http://www.w3.org/2000/svg';

function addKids(el, kids) {
  for (const k of kids.flat(Infinity)) {
    if (k === null || k === undefined || k === false) continue;
    el.appendChild(k instanceof Node ? k : document.createTextNode(String(k)));
  }
}

/** Links go to the app's own views, or to this node's API (a path this
 * code builds, its query values percent-encoded). */
function safeHref(v) {
  const s = String(v);
  return s.startsWith('#/') || s === '#view' || s.startsWith('/v1/') ? s : '#/';
}

/** Builds an element. Attribute names come from this code only; values
 * (possibly from the ledger) are set as attributes or text, never parsed. */
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'style' || /^on/i.test(k) && typeof v !== 'function') continue;
      if (k === 'class') el.className = v;
      else if (k === 'href') el.setAttribute('href', safeHref(v));
      else if (typeof v === 'function' && /^on/.test(k)) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  addKids(el, kids);
  return el;
}

function s(tag, attrs, ...kids) {
  const el = document.createElementNS(SVGNS, tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false || k === 'style' || /^on/i.test(k)) continue;
      if (k === 'class') el.setAttribute('class', v);
      else el.setAttribute(k, String(v));
    }
  }
  for (const k of kids.flat(Infinity)) {
    if (k === null || k === undefined || k === false) continue;
    el.appendChild(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return el;
}

/** `#/a/b` with each part percent-encoded. */
function route(...parts) {
  return '#/' + parts.map((p) => encodeURIComponent(String(p))).join('/');
}

function a(href, ...kids) { return h('a', { href }, ...kids); }

function str(v) { return v === null || v === undefined ? '' : String(v); }

function short(hex) {
  const x = str(hex);
  return x.length > 20 ? x.slice(0, 8) + '…' + x.slice(-6) : x;
}

function mono(text, full) {
  return h('span', { class: 'mono', title: full || null }, text);
}

function hexFull(hex) { return h('span', { class: 'mono hex' }, str(hex)); }

function keyShort(hex) { return mono(short(hex), str(hex)); }

function badge(text, kind) { return h('span', { class: 'badge' + (kind ? ' badge-' + kind : '') }, text); }

function section(title, ...kids) {
  return h('section', { class: 'card' }, title ? h('h2', null, title) : null, ...kids);
}

function facts(pairs) {
  const dl = h('dl', { class: 'facts' });
  for (const [k, v] of pairs) {
    if (v === null || v === undefined || v === false) continue;
    dl.appendChild(h('div', { class: 'fact' }, h('dt', null, k), h('dd', null, v)));
  }
  return dl;
}

function empty(text) { return h('p', { class: 'empty' }, text || t('empty')); }

function note(text, kind) { return h('p', { class: 'note' + (kind ? ' note-' + kind : '') }, text); }

function problemBox(p) {
  const pr = p || {};
  const known = pr.code && Object.prototype.hasOwnProperty.call(I18N.en, 'problem.' + pr.code);
  return h('div', { class: 'problem', role: 'alert' },
    h('strong', null, known ? t('problem.' + pr.code) : pr.title || t('err.title')),
    pr.detail ? h('p', { class: 'detail' }, pr.detail) : null,
    pr.code ? h('p', { class: 'code' }, t('err.code') + t('colon') + pr.code + (pr.status ? ' (HTTP ' + pr.status + ')' : '')) : null);
}

/** A table of `items`, each turned into cells by `row`; long tables show
 * their first rows and a button for the rest. */
function table(cols, items, row, opts) {
  const o = opts || {};
  const tbody = h('tbody');
  const tbl = h('table', { class: o.cls || null },
    o.caption ? h('caption', { class: 'visually-hidden' }, o.caption) : null,
    h('thead', null, h('tr', null, cols.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label !== undefined ? c.label : c)))),
    tbody);
  const add = (list) => {
    for (const it of list) {
      const cells = row(it);
      const tr = h('tr', cells.attrs || null);
      (cells.cells || cells).forEach((c, i) => {
        const col = cols[i] || {};
        tr.appendChild(h(i === 0 && o.rowHeader ? 'th' : 'td', { class: col.num ? 'num' : null, scope: i === 0 && o.rowHeader ? 'row' : null }, c));
      });
      tbody.appendChild(tr);
    }
  };
  const wrap = h('div', { class: 'table-wrap' }, tbl);
  if (items.length > ROWS_SHOWN) {
    add(items.slice(0, ROWS_SHOWN));
    const btn = h('button', { type: 'button', class: 'more' }, t('showall', { n: fmtCount(items.length) }));
    btn.addEventListener('click', () => { add(items.slice(ROWS_SHOWN)); btn.remove(); });
    wrap.appendChild(btn);
  } else {
    add(items);
  }
  return wrap;
}

// ------------------------------------------------------------------ numbers, money, time

/** An API integer (a JSON number, or a string when it was too large for a
 * double) as a BigInt; 0n when absent or malformed. */
function big(v) {
  if (typeof v === 'bigint') return v;
  const x = str(v).trim();
  if (!/^-?\d+$/.test(x)) return 0n;
  try { return BigInt(x); } catch (e) { return 0n; }
}

/** Minor units to an exact decimal string ("1234567", 2 -> "12345.67"). */
function decStr(minor, decimals) {
  let v = big(minor);
  const neg = v < 0n;
  if (neg) v = -v;
  const d = Math.max(0, Math.floor(Number(decimals) || 0));
  let x = v.toString();
  if (d > 0) {
    x = x.padStart(d + 1, '0');
    x = x.slice(0, x.length - d) + '.' + x.slice(x.length - d);
  }
  return (neg ? '-' : '') + x;
}

const fmtCache = new Map();
function cachedFmt(key, make) {
  if (!fmtCache.has(key)) {
    let f = null;
    try { f = make(); } catch (e) { f = null; }
    fmtCache.set(key, f);
  }
  return fmtCache.get(key);
}

/** Money for the locale: the exact decimal string goes to Intl. */
function money(minor, currency, decimals) {
  const d = Math.max(0, Math.floor(Number(decimals) || 0));
  const text = decStr(minor, d);
  const cur = str(currency);
  if (d > 20) return text + (cur ? ' ' + cur : '');
  const nf = cur
    ? cachedFmt('c|' + lang + '|' + cur + '|' + d, () => new Intl.NumberFormat(lang, { style: 'currency', currency: cur, minimumFractionDigits: d, maximumFractionDigits: d }))
    : cachedFmt('d|' + lang + '|' + d, () => new Intl.NumberFormat(lang, { minimumFractionDigits: d, maximumFractionDigits: d }));
  if (!nf) return text + (cur ? ' ' + cur : '');
  try { return nf.format(text); } catch (e) { return text + (cur ? ' ' + cur : ''); }
}

function fmtCount(n) {
  const nf = cachedFmt('n|' + lang, () => new Intl.NumberFormat(lang));
  const x = str(n);
  if (!nf || !/^-?\d+$/.test(x)) return x;
  try { return nf.format(x); } catch (e) { return x; }
}

/** The fraction digits a currency usually has, when no program says. */
function defaultDecimals(currency) {
  const nf = currency ? cachedFmt('dd|' + currency, () => new Intl.NumberFormat('en', { style: 'currency', currency })) : null;
  return nf ? nf.resolvedOptions().maximumFractionDigits : 2;
}

/** A money figure for the test hooks and for people. */
function figure(name, minor, text, extra) {
  const attrs = Object.assign({ class: 'fig', 'data-figure': name, 'data-minor': str(minor === undefined || minor === null ? '0' : minor) }, extra || {});
  return h('span', attrs, text);
}

function moneyFig(name, minor, currency, decimals, extra) {
  return figure(name, minor, money(minor, currency, decimals), extra);
}

function countFig(name, n, extra) { return figure(name, n, fmtCount(n), extra); }

function fmtTime(ms) {
  const n = Number(str(ms));
  if (!ms || !Number.isFinite(n) || n <= 0) return '—';
  const f = cachedFmt('t|' + lang, () => new Intl.DateTimeFormat(lang, {
    year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23', timeZoneName: 'short',
  }));
  try { return f ? f.format(new Date(n)) : new Date(n).toISOString(); } catch (e) { return str(ms); }
}

function timeEl(ms) {
  const n = Number(str(ms));
  if (!ms || !Number.isFinite(n) || n <= 0) return '—';
  let iso = null;
  try { iso = new Date(n).toISOString(); } catch (e) { iso = null; }
  return h('time', { datetime: iso }, fmtTime(ms));
}

function fmtAgo(ms) {
  const n = Number(str(ms));
  if (!n) return '—';
  const secs = Math.round((n - Date.now()) / 1000);
  const rf = cachedFmt('r|' + lang, () => new Intl.RelativeTimeFormat(lang, { numeric: 'auto' }));
  if (!rf) return fmtTime(ms);
  const abs = Math.abs(secs);
  if (abs < 60) return rf.format(secs, 'second');
  if (abs < 3600) return rf.format(Math.round(secs / 60), 'minute');
  if (abs < 86400) return rf.format(Math.round(secs / 3600), 'hour');
  return rf.format(Math.round(secs / 86400), 'day');
}

function fmtDuration(ms) {
  const n = big(ms);
  const units = [[86400000n, 'dur.d'], [3600000n, 'dur.h'], [60000n, 'dur.m'], [1000n, 'dur.s']];
  for (const [u, k] of units) if (n >= u && n % u === 0n) return t(k, { n: fmtCount(n / u) });
  for (const [u, k] of units) if (n >= u) return t(k, { n: fmtCount(n / u) });
  return str(ms) + ' ms';
}

/** a / b as a number in [0, 1] for drawing (b > 0). */
function frac(x, y) {
  if (y <= 0n) return 0;
  return Number((x * 1000000n) / y) / 1000000;
}

// ------------------------------------------------------------------ the API

class ApiError extends Error {
  constructor(r) { super((r.problem && r.problem.detail) || 'request failed'); this.result = r; }
}

/** Parses JSON, keeping integers too large for a double exact by turning
 * them into strings first (amounts are u64 minor units). */
function parseJSON(text) {
  let out = '';
  let last = 0;
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 34) {
      i++;
      while (i < n) {
        const d = text.charCodeAt(i);
        if (d === 92) i += 2;
        else { i++; if (d === 34) break; }
      }
    } else if (c === 45 || (c >= 48 && c <= 57)) {
      const start = i;
      if (c === 45) i++;
      const ds = i;
      while (i < n && text.charCodeAt(i) >= 48 && text.charCodeAt(i) <= 57) i++;
      const next = i < n ? text[i] : '';
      if (next === '.' || next === 'e' || next === 'E') {
        while (i < n && /[0-9.eE+-]/.test(text[i])) i++;
      } else if (i - ds > 15) {
        out += text.slice(last, start) + '"' + text.slice(start, i) + '"';
        last = i;
      }
    } else {
      i++;
    }
  }
  return JSON.parse(last ? out + text.slice(last) : text);
}

/** GETs an API path. Never throws: {ok, status, data} or {ok:false, problem}. */
async function api(path) {
  let res;
  try {
    res = await fetch(path, { headers: { Accept: 'application/json' }, credentials: 'same-origin', cache: 'no-store' });
  } catch (e) {
    return { ok: false, status: 0, problem: { title: t('err.network'), detail: str(e && e.message), code: 'network' } };
  }
  let text = '';
  try { text = await res.text(); } catch (e) { text = ''; }
  let body = null;
  try { body = text ? parseJSON(text) : null; } catch (e) { body = null; }
  if (res.ok) {
    if (body !== null && typeof body === 'object') return { ok: true, status: res.status, data: body };
    return { ok: false, status: res.status, problem: { title: t('err.badjson'), detail: '', code: 'bad-response' } };
  }
  const p = body && typeof body === 'object' ? body : {};
  return {
    ok: false,
    status: res.status,
    problem: { title: str(p.title) || res.statusText || t('err.title'), detail: str(p.detail) || text.slice(0, 300), code: str(p.code), status: res.status },
  };
}

function need(r) {
  if (!r.ok) throw new ApiError(r);
  return r.data;
}

/** A route missing on this node (an older build): 404 with no record named. */
function routeMissing(r) {
  return !r.ok && r.status === 404 && /no route/i.test(str(r.problem && r.problem.detail));
}

// Routes an older node answered "no route" for: not asked again.
const missing = new Set();

function withQuery(path, params) {
  const q = Object.entries(params).filter(([, v]) => v !== null && v !== undefined && v !== '')
    .map(([k, v]) => encodeURIComponent(k) + '=' + encodeURIComponent(String(v))).join('&');
  return q ? path + (path.includes('?') ? '&' : '?') + q : path;
}

/** Follows `next` cursors: {ok, items, capped, pages} or {ok:false, ...}. */
async function allPages(path, limit, cap) {
  const items = [];
  let after = null;
  for (let pages = 1; ; pages++) {
    const r = await api(withQuery(path, { limit, after }));
    if (!r.ok) return Object.assign({}, r, { items });
    const page = r.data;
    if (Array.isArray(page.items)) items.push(...page.items);
    after = page.next;
    if (!after) return { ok: true, items, capped: false, pages };
    if (pages >= cap) return { ok: true, items, capped: true, pages };
  }
}

/** One page of a filtered list: a filtering route may answer a page with
 * no items and a `next` (it reads a bounded number of keys per page), so
 * follow it a few times until something shows. */
async function somePage(path, params) {
  let r = await api(withQuery(path, params));
  for (let i = 0; i < 10 && r.ok && !(r.data.items || []).length && r.data.next; i++) {
    r = await api(withQuery(path, Object.assign({}, params, { after: r.data.next })));
  }
  return r;
}

// Lookups shared by pages: programs (currency, decimals, titles) and
// organisations (names). Refreshed every CACHE_MS; a failure leaves them empty.
const caches = { programs: null, orgs: null };
let programsById = new Map();
let orgsById = new Map();

function cached(name, load) {
  const c = caches[name];
  if (c && Date.now() - c.at < CACHE_MS) return c.promise;
  const promise = load();
  caches[name] = { at: Date.now(), promise };
  return promise;
}

function loadPrograms() {
  return cached('programs', async () => {
    const r = await allPages('/v1/programs', 500, LIST_PAGE_CAP);
    if (r.ok) programsById = new Map(r.items.map((p) => [str(p.id), p]));
    return r;
  });
}

function loadOrgs() {
  return cached('orgs', async () => {
    const r = await allPages('/v1/orgs', 500, LIST_PAGE_CAP);
    if (r.ok) orgsById = new Map(r.items.map((o) => [str(o.id), o]));
    return r;
  });
}

/** Currency and decimals of a program, when known. */
function unitOf(programId) {
  const p = programsById.get(str(programId));
  return p ? { currency: str(p.currency), decimals: Number(p.decimals) || 0 } : null;
}

function moneyOf(programId, minor) {
  const u = unitOf(programId);
  // Without the program's currency and decimals the amount cannot be
  // shown as money: say it is in minor units rather than misread it.
  return u ? money(minor, u.currency, u.decimals) : t('minor.units', { n: str(minor) });
}

/** Decimals per currency, from the programs that use it. */
function decimalsFor(currency) {
  for (const p of programsById.values()) if (str(p.currency) === currency) return Number(p.decimals) || 0;
  return defaultDecimals(currency);
}

// ------------------------------------------------------------------ links to records

function tagOf(v) {
  if (typeof v === 'string') return [v, null];
  if (v && typeof v === 'object') {
    const k = Object.keys(v)[0];
    return k === undefined ? ['', null] : [k, v[k]];
  }
  return ['', null];
}

function orgLink(id) {
  const x = str(id);
  if (!x) return '—';
  if (/^#\d+$/.test(x)) return t('validator.n', { n: x.slice(1) });
  if (/^[0-9a-f]{64}$/.test(x)) return keyShort(x);
  const o = orgsById.get(x);
  return h('a', { href: route('orgs', x), title: o ? x : null }, o && str(o.name) ? str(o.name) : x);
}

function programLink(id) {
  const x = str(id);
  const p = programsById.get(x);
  return h('a', { href: route('programs', x), title: p ? x : null }, p && str(p.title) ? str(p.title) : x);
}

function heightLink(height) {
  const x = str(height);
  return x ? h('a', { href: route('blocks', x), class: 'mono' }, '#' + x) : '—';
}

function txLink(id) { return id ? h('a', { href: route('tx', str(id)), class: 'mono', title: str(id) }, short(id)) : '—'; }

function hhLink(hex) { return h('a', { href: route('households', str(hex)), class: 'mono', title: str(hex) }, t('hh.short', { id: short(hex) })); }

function appLink(id) { return h('a', { href: route('applications', str(id)), class: 'nowrap' }, str(id)); }

function regionLink(code) { return code ? h('a', { href: route('regions', str(code)) }, str(code)) : '—'; }

function subjectNode(subj) {
  const [k, v] = tagOf(subj);
  if (k === 'household') return hhLink(v);
  if (k === 'application') return appLink(v);
  if (k === 'release') return t('release.n', { n: str(v) });
  return str(k);
}

function recipientNode(r) {
  const [k, v] = tagOf(r);
  if (k === 'household') return hhLink(v);
  if (k === 'org') return orgLink(v);
  return str(k);
}

function partyNode(p) {
  const [k, v] = tagOf(p);
  if (k === 'household') return hhLink(v);
  if (k === 'org') return orgLink(v);
  if (k === 'program') return h('a', { href: route('programs', str(v)) }, t('party.program', { id: str(v) }));
  return str(k);
}

function sourceText(src) {
  const [k, v] = tagOf(src);
  if (k === 'tranche' && v) return t('src.tranche', { plan: str(v.plan), tranche: str(v.tranche) });
  if (k === 'entitlement' && v) return t('src.ent', { ent: str(v.entitlement), period: str(v.period) });
  return str(k);
}

function settlementNode(rel) {
  const st = rel && rel.settlement;
  if (!st) return badge(t('settle.none'), 'wait');
  if (str(st.status) === 'confirmed') return badge(t('settle.confirmed'), 'ok');
  return badge(t('settle.disputed'), 'bad');
}

function outcomeNode(applied) {
  return applied ? badge(t('outcome.applied'), 'ok') : badge(t('outcome.rejected'), 'bad');
}

function statusBadge(group, value) {
  const v = str(value);
  const kind = { active: 'ok', open: group === 'anomstatus' ? 'bad' : 'ok', resolved: 'ok', approved: 'ok', funded: 'ok', completed: 'ok', committed: 'ok', released: 'ok', rejected: 'bad', suspended: 'bad', cancelled: 'muted', closed: 'muted', inactive: 'muted', pending: 'wait', held: 'bad', submitted: 'wait', unknown: 'muted' }[v];
  return badge(L(group, v), kind);
}

// ------------------------------------------------------------------ charts (SVG)

function svgRoot(w, hgt, label, cls) {
  return s('svg', { viewBox: '0 0 ' + w + ' ' + hgt, width: w, height: hgt, role: 'img', 'aria-label': label, class: 'chart ' + (cls || ''), preserveAspectRatio: 'xMinYMin meet' },
    s('title', null, label));
}

function clip(text, n) { const x = str(text); return x.length > n ? x.slice(0, n - 1) + '…' : x; }

/** Horizontal bars: groups of one or more bars, each {value, text, cls, name}. */
function barChart(label, groups, opts) {
  const o = opts || {};
  const W = o.width || 720;
  const labelW = o.labelW || 170;
  const valueW = 180;
  const barH = 16;
  const gap = 3;
  const groupGap = 12;
  const area = W - labelW - valueW;
  // Bars are scaled per unit (`scale`, a currency): amounts in different
  // currencies are never drawn against each other.
  const maxes = new Map();
  for (const g of groups) for (const b of g.bars) { const k = b.scale || ''; if (!maxes.has(k) || b.value > maxes.get(k)) maxes.set(k, b.value); }
  let y = 8;
  const body = [];
  for (const g of groups) {
    const gh = g.bars.length * (barH + gap) - gap;
    body.push(s('text', { x: labelW - 8, y: y + gh / 2 + 4, 'text-anchor': 'end', class: 'chart-label' }, clip(g.label, Math.floor(labelW / 7))));
    g.bars.forEach((b, i) => {
      const by = y + i * (barH + gap);
      const max = maxes.get(b.scale || '') || 0n;
      const w = max > 0n ? Math.max(b.value > 0n ? 1.5 : 0, frac(b.value, max) * area) : 0;
      body.push(s('rect', { x: labelW, y: by, width: w.toFixed(1), height: barH, rx: 2, class: 'bar ' + (b.cls || '') },
        s('title', null, g.label + (b.name ? ' · ' + b.name : '') + t('colon') + b.text)));
      body.push(s('text', { x: (labelW + w + 6).toFixed(1), y: by + barH - 4, class: 'chart-value' }, b.text));
    });
    y += gh + groupGap;
  }
  const H = y - groupGap + 8;
  const svg = svgRoot(W, H, label, 'bars');
  body.forEach((n) => svg.appendChild(n));
  return svg;
}

function legend(items) {
  return h('ul', { class: 'legend' }, items.map(([cls, text]) => h('li', null, h('span', { class: 'swatch ' + cls, 'aria-hidden': 'true' }), text)));
}

/** A thin stacked bar: where a program's deposits are now. */
function stackBar(segs, total, label) {
  const W = 1000;
  const H = 14;
  const svg = svgRoot(W, H, label, 'stack');
  svg.setAttribute('preserveAspectRatio', 'none');
  if (total <= 0n) {
    svg.appendChild(s('rect', { x: 0, y: 0, width: W, height: H, class: 'seg c-empty' }));
    return svg;
  }
  let x = 0;
  for (const sg of segs) {
    if (sg.value <= 0n) continue;
    const w = frac(sg.value, total) * W;
    svg.appendChild(s('rect', { x: x.toFixed(2), y: 0, width: Math.max(w, 0.8).toFixed(2), height: H, class: 'seg ' + sg.cls }, s('title', null, sg.label)));
    x += w;
  }
  return svg;
}

/** The money flow of a program as bands from deposit to settlement, each
 * band as wide as its amount. */
function flowChart(program, releases) {
  const b = program.balances || {};
  const cur = str(program.currency);
  const dec = Number(program.decimals) || 0;
  const D = big(b.deposited);
  const A = big(b.available);
  const C = big(b.committed);
  const R = big(b.released);
  const S = big(b.settled);
  const RET = big(b.returned);
  let E = 0n;
  for (const r of releases) if (tagOf(r.source)[0] === 'entitlement') E += big(r.amount);
  if (E > R) E = R;
  const relPlans = R - E;
  const plans = C + relPlans;
  const unsettled = R > S ? R - S : 0n;
  const cols = [[{ id: 'dep', k: 'bal.deposited', v: D, cls: 'c-deposited' }],
    [{ id: 'plans', k: 'flow.plans', v: plans, cls: 'c-committed' }]
      .concat(E > 0n ? [{ id: 'ent', k: 'flow.ent', v: E, cls: 'c-released' }] : [])
      .concat([{ id: 'avail', k: 'bal.available', v: A, cls: 'c-available' }, { id: 'ret', k: 'bal.returned', v: RET, cls: 'c-returned' }]),
    [{ id: 'pend', k: 'flow.pending', v: C, cls: 'c-committed' }, { id: 'rel', k: 'bal.released', v: R, cls: 'c-released' }],
    [{ id: 'set', k: 'bal.settled', v: S, cls: 'c-settled' }, { id: 'unset', k: 'bal.unsettled', v: unsettled, cls: 'c-unsettled' }]];
  const links = [['dep', 'plans', plans], ['dep', 'ent', E], ['dep', 'avail', A], ['dep', 'ret', RET],
    ['plans', 'pend', C], ['plans', 'rel', relPlans], ['ent', 'rel', E], ['rel', 'set', S], ['rel', 'unset', unsettled]];
  const W = 980;
  const colX = [10, 240, 470, 700];
  const barW = 14;
  const span = 300;
  const minSlot = 42;
  const gap = 14;
  const px = (v) => (D > 0n ? frac(v, D) * span : 0);
  const nodes = new Map();
  let H = 0;
  cols.forEach((col, ci) => {
    let y = 10;
    for (const n of col) {
      const hh = Math.max(px(n.v), n.v > 0n ? 1.5 : 1);
      const slot = Math.max(hh, minSlot);
      n.x = colX[ci];
      n.y = y + (slot - hh) / 2;
      n.h = hh;
      n.out = 0;
      n.in = 0;
      nodes.set(n.id, n);
      y += slot + gap;
    }
    H = Math.max(H, y);
  });
  const summary = cols.flat().map((n) => t(n.k) + ' ' + money(n.v, cur, dec)).join('; ');
  const svg = svgRoot(W, Math.ceil(H), t('chart.flow', { p: str(program.title) || str(program.id) }) + t('colon') + summary, 'flow');
  const bands = s('g', { class: 'bands' });
  const boxes = s('g', { class: 'boxes' });
  svg.appendChild(bands);
  svg.appendChild(boxes);
  for (const [from, to, v] of links) {
    const f = nodes.get(from);
    const g = nodes.get(to);
    if (!f || !g || v <= 0n) continue;
    const th = Math.max(px(v), 1);
    const x0 = f.x + barW;
    const x1 = g.x;
    const y0 = f.y + f.out;
    const y1 = g.y + g.in;
    f.out += th;
    g.in += th;
    const xm = (x0 + x1) / 2;
    const d = 'M' + x0 + ',' + y0.toFixed(1) + ' C' + xm + ',' + y0.toFixed(1) + ' ' + xm + ',' + y1.toFixed(1) + ' ' + x1 + ',' + y1.toFixed(1) +
      ' L' + x1 + ',' + (y1 + th).toFixed(1) + ' C' + xm + ',' + (y1 + th).toFixed(1) + ' ' + xm + ',' + (y0 + th).toFixed(1) + ' ' + x0 + ',' + (y0 + th).toFixed(1) + ' Z';
    bands.appendChild(s('path', { d, class: 'band ' + g.cls }, s('title', null, t(f.k) + ' → ' + t(g.k) + t('colon') + money(v, cur, dec))));
  }
  for (const n of nodes.values()) {
    const cy = n.y + n.h / 2;
    boxes.appendChild(s('rect', { x: n.x, y: n.y.toFixed(1), width: barW, height: n.h.toFixed(1), class: 'node ' + n.cls }, s('title', null, t(n.k) + t('colon') + money(n.v, cur, dec))));
    boxes.appendChild(s('text', { x: n.x + barW + 6, y: (cy - 3).toFixed(1), class: 'flow-name' }, t(n.k)));
    boxes.appendChild(s('text', { x: n.x + barW + 6, y: (cy + 13).toFixed(1), class: 'flow-amount' }, money(n.v, cur, dec)));
  }
  return svg;
}

// ------------------------------------------------------------------ header: language, nav, status strip, search

function view() { return document.getElementById('view'); }

function applyStatic() {
  document.documentElement.lang = lang;
  for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.getAttribute('data-i18n'));
  for (const el of document.querySelectorAll('[data-i18n-placeholder]')) el.setAttribute('placeholder', t(el.getAttribute('data-i18n-placeholder')));
  for (const el of document.querySelectorAll('[data-i18n-aria]')) el.setAttribute('aria-label', t(el.getAttribute('data-i18n-aria')));
  for (const b of document.querySelectorAll('[data-lang]')) b.setAttribute('aria-pressed', b.getAttribute('data-lang') === lang ? 'true' : 'false');
}

function setLang(l) {
  if (l !== 'zh-CN' && l !== 'en') return;
  lang = l;
  try { window.localStorage.setItem(STORE_KEY, l); } catch (e) { /* private mode: not remembered */ }
  applyStatic();
  paintStrip();
  render();
}

function markNav(page) {
  const section = { overview: 'overview', block: 'overview', org: 'overview', tx: 'overview', programs: 'programs', program: 'programs', applications: 'applications', application: 'applications', anomalies: 'anomalies', regions: 'regions', region: 'regions' }[page];
  for (const el of document.querySelectorAll('[data-nav]')) {
    if (el.getAttribute('data-nav') === section) el.setAttribute('aria-current', 'page');
    else el.removeAttribute('aria-current');
  }
}

let lastStatus = null;
let stripFailed = false;
let stripTimer = 0;

let stripBusy = false;

async function refreshStrip() {
  if (stripBusy) return;
  stripBusy = true;
  clearTimeout(stripTimer);
  try {
    if (!document.hidden) {
      const r = await api('/v1/status');
      if (r.ok) { lastStatus = r.data; stripFailed = false; } else { stripFailed = true; }
      paintStrip();
    }
  } finally {
    stripBusy = false;
    stripTimer = setTimeout(refreshStrip, STRIP_MS);
  }
}

function paintStrip() {
  const el = document.getElementById('status-strip');
  if (!el) return;
  const st = lastStatus;
  const item = (k, v) => h('span', { class: 'strip-item' }, h('span', { class: 'strip-k' }, k), ' ', h('span', { class: 'strip-v' }, v));
  if (!st) {
    el.replaceChildren(stripFailed ? h('span', { class: 'dot dot-bad' }, t('strip.offline')) : '');
    return;
  }
  el.replaceChildren(
    h('span', { class: 'dot ' + (stripFailed ? 'dot-bad' : 'dot-ok') }, stripFailed ? t('strip.offline') : t('strip.live')),
    item(t('st.chain'), str(st.chain_id)),
    item(t('st.height'), heightLink(st.height)),
    item(t('st.view'), str(st.view)),
    item(t('st.leader'), st.leader ? orgLink(st.leader) : '—'),
    item(t('st.peers'), fmtCount(st.peers)),
    item(t('st.mempool'), fmtCount(st.mempool_txs)),
    h('span', { class: 'strip-item' }, t('strip.ago', { t: fmtAgo(st.last_block_time_ms) })));
}

const HEX64 = /^(0x)?[0-9a-fA-F]{64}$/;

/** Finds what the search box names, probing in an order that normally hits
 * (a 404 would show in the browser console). */
async function search(q) {
  const seq = ++navSeq;
  const v = view();
  v.dataset.loaded = 'false';
  v.setAttribute('aria-busy', 'true');
  v.replaceChildren(h('p', { class: 'loading' }, t('searching')));
  let target = null;
  if (/^\d{1,20}$/.test(q)) {
    target = route('blocks', q.replace(/^0+(?=\d)/, ''));
  } else if (HEX64.test(q)) {
    const id = q.replace(/^0x/, '').toLowerCase();
    const tx = await api('/v1/txs/' + id);
    if (tx.ok && str(tx.data.status) && str(tx.data.status) !== 'unknown') target = route('tx', id);
    else if ((await api('/v1/households/' + id)).ok) target = route('households', id);
  } else if (/^[A-Za-z0-9][A-Za-z0-9_.\-/]*$/.test(q) && q.length <= 128) {
    const id = q.toLowerCase();
    const progs = await loadPrograms();
    if (progs.ok && programsById.has(id)) {
      target = route('programs', id);
    } else {
      const apps = await allPages('/v1/applications', 1000, 5);
      if (apps.ok && apps.items.some((x) => str(x.id) === id)) target = route('applications', id);
      else {
        const orgs = await loadOrgs();
        if (orgs.ok && orgsById.has(id)) target = route('orgs', id);
        else if (!progs.ok && (await api('/v1/programs/' + encodeURIComponent(id))).ok) target = route('programs', id);
        else if ((!apps.ok || apps.capped) && (await api('/v1/applications/' + encodeURIComponent(id))).ok) target = route('applications', id);
        else if (!orgs.ok && (await api('/v1/orgs/' + encodeURIComponent(id))).ok) target = route('orgs', id);
      }
    }
  }
  if (seq !== navSeq) return;
  go(target || '#/search/' + encodeURIComponent(q));
}

function go(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

// ------------------------------------------------------------------ router

let navSeq = 0;

function safeDecode(x) { try { return decodeURIComponent(x); } catch (e) { return x; } }

function parseHash() {
  let raw = location.hash.replace(/^#/, '');
  if (!raw.startsWith('/')) raw = '/' + raw;
  const qi = raw.indexOf('?');
  const path = qi >= 0 ? raw.slice(0, qi) : raw;
  const query = new URLSearchParams(qi >= 0 ? raw.slice(qi + 1) : '');
  return { segs: path.split('/').filter(Boolean).map(safeDecode), query };
}

function resolve(segs) {
  const [head, ...rest] = segs;
  const one = rest.length === 1;
  switch (head) {
    case undefined: return ['overview', pageOverview, []];
    case 'blocks': if (one) return ['block', pageBlock, rest]; if (!rest.length) return ['overview', pageOverview, []]; break;
    case 'programs': if (!rest.length) return ['programs', pagePrograms, []]; if (one) return ['program', pageProgram, rest]; break;
    case 'applications': if (!rest.length) return ['applications', pageApplications, []]; if (one) return ['application', pageApplication, rest]; break;
    case 'anomalies': if (!rest.length) return ['anomalies', pageAnomalies, []]; break;
    case 'households': if (one) return ['household', pageHousehold, rest]; break;
    case 'regions': if (!rest.length) return ['regions', pageRegions, []]; return ['region', pageRegion, [rest.join('/')]];
    case 'orgs': if (one) return ['org', pageOrg, rest]; break;
    case 'tx': case 'txs': if (one) return ['tx', pageTx, rest]; break;
    case 'search': return ['not-found', pageSearchMiss, [rest.join('/')]];
    default: break;
  }
  return ['not-found', pageNotFound, []];
}

async function render(moved) {
  const seq = ++navSeq;
  const { segs, query } = parseHash();
  const [name, fn, args] = resolve(segs);
  const v = view();
  v.dataset.loaded = 'false';
  v.dataset.page = name;
  v.setAttribute('aria-busy', 'true');
  markNav(name);
  v.replaceChildren(h('p', { class: 'loading' }, t('loading')));
  const ctx = { seq, args, query, title: '' };
  let node;
  try {
    node = await fn(ctx);
  } catch (e) {
    if (seq !== navSeq) return;
    v.dataset.page = 'error';
    ctx.title = t('err.title');
    node = errorPage(e);
  }
  if (seq !== navSeq) return;
  v.replaceChildren(node);
  document.title = (ctx.title ? ctx.title + ' · ' : '') + t('brand');
  v.removeAttribute('aria-busy');
  v.dataset.loaded = 'true';
  if (moved === true) {
    window.scrollTo(0, 0);
    v.focus({ preventScroll: true });
  }
}

function errorPage(e) {
  const p = e instanceof ApiError ? e.result.problem : { title: t('err.internal'), detail: str(e && e.message), code: 'explorer' };
  const retry = h('button', { type: 'button' }, t('err.retry'));
  retry.addEventListener('click', () => render());
  return h('div', { class: 'page' }, h('h1', null, t('err.title')), problemBox(p), h('p', null, retry, ' ', a('#/', t('notfound.back'))));
}

function pageNotFound(ctx) {
  ctx.title = t('notfound.title');
  return h('div', { class: 'page' }, h('h1', null, t('notfound.title')), h('p', null, t('notfound.text')), h('p', null, a('#/', t('notfound.back'))));
}

function pageSearchMiss(ctx) {
  ctx.title = t('search.title');
  return h('div', { class: 'page' }, h('h1', null, t('search.title')),
    h('p', { class: 'problem' }, t('search.none', { q: ctx.args[0] })), h('p', null, t('search.hint')));
}

/** A section for a secondary request: its content, or the problem. */
function sectionFor(title, r, build) {
  return section(title, r.ok ? build(r.data) : problemBox(r.problem));
}

// ------------------------------------------------------------------ overview

async function loadBlocks(limit) {
  const r = missing.has('blocks') ? { ok: false, status: 404, problem: { detail: 'no route' } } : await api('/v1/blocks?limit=' + limit);
  if (r.ok || !routeMissing(r)) return r;
  missing.add('blocks');
  // An older node without the list: read the last blocks one by one.
  const latest = await api('/v1/blocks/latest');
  if (!latest.ok) return latest.status === 404 ? { ok: true, data: { items: [], next: null } } : latest;
  const top = Number(str(latest.data.header && latest.data.header.height)) || 0;
  const heights = [];
  for (let x = top - 1; x >= 1 && heights.length < limit - 1; x--) heights.push(x);
  const rest = await Promise.all(heights.map((x) => api('/v1/blocks/' + x)));
  const blocks = [latest].concat(rest).filter((x) => x.ok).map((x) => x.data);
  return {
    ok: true,
    data: {
      items: blocks.map((b) => ({
        height: b.header.height, hash: b.hash, time_ms: b.header.timestamp, view: b.header.view, proposer: b.header.proposer, proposer_org: null, tx_count: b.header.tx_count,
        certificate: b.certificate ? { view: b.certificate.view, signers: (b.certificate.signatures || []).map((x) => '#' + x.validator) } : null,
      })),
      next: null,
    },
  };
}

function signersNode(cert) {
  if (!cert) return badge(t('cert.none'), 'wait');
  const signers = Array.isArray(cert.signers) ? cert.signers : [];
  const list = h('span', { class: 'signers' });
  signers.forEach((x, i) => { if (i) list.appendChild(document.createTextNode(t('sep'))); addKids(list, [orgLink(x)]); });
  return h('span', null, t('cert.summary', { v: str(cert.view), n: signers.length }), ' ', list);
}

async function pageOverview(ctx) {
  ctx.title = t('overview.title');
  const [st, orgs, blocks] = await Promise.all([api('/v1/status'), loadOrgs(), loadBlocks(20)]);
  if (st.ok) { lastStatus = st.data; stripFailed = false; paintStrip(); }
  const node = st.ok ? statusFacts(st.data) : problemBox(st.problem);
  const orgSection = section(t('orgs.title'), orgs.ok
    ? (orgs.items.length
      ? [table([t('id'), t('orgs.name'), t('org.kind'), t('status')], orgs.items, (o) => [
        a(route('orgs', str(o.id)), str(o.id)), str(o.name), L('orgkind', o.kind), statusBadge('status', o.status)]),
      orgs.capped ? note(t('capped', { pages: orgs.pages, n: orgs.items.length })) : null]
      : empty(t('orgs.none')))
    : problemBox(orgs.problem));
  const blockSection = sectionFor(t('blocks.title'), blocks, (page) => {
    const items = Array.isArray(page.items) ? page.items : [];
    if (!items.length) return empty(t('blocks.none'));
    return table([t('height'), t('time'), t('blocks.proposer'), { label: t('blocks.txs'), num: true }, t('view'), t('blocks.cert')], items, (b) => [
      heightLink(b.height), timeEl(b.time_ms), b.proposer_org ? orgLink(b.proposer_org) : keyShort(b.proposer),
      countFig('tx-count', b.tx_count, { 'data-height': str(b.height) }), str(b.view), signersNode(b.certificate)]);
  });
  return h('div', { class: 'page' }, h('h1', null, t('overview.title')), section(t('node.title'), node), orgSection, blockSection);
}

function statusFacts(st) {
  const up = st.upgrade;
  return facts([
    [t('st.chain'), mono(str(st.chain_id))],
    [t('st.org'), orgLink(st.org)],
    [t('st.role'), st.validator ? t('st.validator') : t('st.observer')],
    [t('st.voting'), st.voting ? t('yes') : t('no')],
    [t('st.height'), h('a', { href: route('blocks', str(st.height)) }, figure('height', st.height, '#' + str(st.height)))],
    [t('st.view'), str(st.view)],
    [t('st.leader'), st.leader ? orgLink(st.leader) : '—'],
    [t('st.peers'), countFig('peers', st.peers)],
    [t('st.mempool'), countFig('mempool', st.mempool_txs)],
    [t('st.last'), timeEl(st.last_block_time_ms)],
    [t('st.next'), st.next_due_ms ? h('span', null, timeEl(st.next_due_ms), st.next_due_reason ? t('paren', { x: L('due', st.next_due_reason) }) : '') : null],
    [t('st.base'), Number(str(st.base)) > 1 ? heightLink(st.base) : null],
    [t('st.hash'), hexFull(st.block_hash)],
    [t('st.root'), hexFull(st.state_root)],
    [t('st.genesis'), hexFull(st.genesis_hash)],
    [t('st.key'), hexFull(st.node_key)],
    [t('st.peer'), st.peer_id ? mono(str(st.peer_id)) : null],
    [t('st.modules'), Array.isArray(st.modules) && st.modules.length ? mono(st.modules.map(str).join(', ')) : null],
    [t('st.upgrade'), up ? h('span', null, t('st.upgrade.at', { modules: (up.modules || []).map(str).join(', '), h: str(up.at_height) }),
      up.missing && up.missing.length ? h('span', { class: 'warn' }, ' ' + t('st.upgrade.missing', { m: up.missing.map(str).join(', ') })) : null) : null],
  ]);
}

// ------------------------------------------------------------------ block

async function pageBlock(ctx) {
  const raw = ctx.args[0];
  const hgt = /^\d{1,20}$/.test(raw) ? raw.replace(/^0+(?=\d)/, '') : raw === 'latest' ? 'latest' : null;
  ctx.title = t('block.n', { n: raw });
  if (!hgt) throw new ApiError({ ok: false, problem: { title: t('notfound.title'), detail: t('search.hint'), code: 'bad-request' } });
  const blockR = await api('/v1/blocks/' + hgt);
  const b = need(blockR);
  const hd = b.header || {};
  const n = big(hd.height);
  ctx.title = t('block.n', { n: str(hd.height) });
  const [sum] = await Promise.all([missing.has('blocks') ? { ok: false } : api('/v1/blocks?limit=1&after=' + (n + 1n).toString()), loadOrgs()]);
  if (routeMissing(sum)) missing.add('blocks');
  const summary = sum.ok && sum.data.items && sum.data.items[0] && big(sum.data.items[0].height) === n ? sum.data.items[0] : null;
  const known = lastStatus ? big(lastStatus.height) : null;
  const pager = h('nav', { class: 'pager', 'aria-label': t('block.pager') },
    n > 1n ? a(route('blocks', (n - 1n).toString()), t('block.prev', { n: (n - 1n).toString() })) : h('span'),
    known === null || n < known ? a(route('blocks', (n + 1n).toString()), t('block.next', { n: (n + 1n).toString() })) : h('span'));
  const pc = hd.parent_certificate;
  const header = facts([
    [t('block.hash'), hexFull(b.hash)],
    [t('block.parent'), n > 1n ? h('span', null, heightLink((n - 1n).toString()), ' ', hexFull(hd.parent_hash)) : hexFull(hd.parent_hash)],
    [t('block.time'), timeEl(hd.timestamp)],
    [t('block.proposer'), h('span', null, summary && summary.proposer_org ? [orgLink(summary.proposer_org), ' '] : null, keyShort(hd.proposer))],
    [t('block.view'), str(hd.view)],
    [t('blocks.txs'), countFig('tx-count', hd.tx_count, { 'data-height': str(hd.height) })],
    [t('block.txroot'), hexFull(hd.tx_root)],
    [t('block.stateroot'), hexFull(hd.state_root)],
    [t('block.vset'), hexFull(hd.validator_set_hash)],
    [t('block.nextvset'), h('span', null, hexFull(hd.next_validator_set_hash), str(hd.next_validator_set_hash) !== str(hd.validator_set_hash) ? [' ', badge(t('block.vsetchange'), 'wait')] : null)],
    [t('block.parentcert'), pc ? t('block.parentcert.text', { v: str(pc.view), n: (pc.signatures || []).length }) : null],
    [t('block.chain'), mono(str(hd.chain_id))],
    [t('block.version'), str(hd.version)],
  ]);
  const txs = Array.isArray(b.txs) ? b.txs : [];
  const txSection = section(t('block.txs'), txs.length
    ? table(['#', t('id'), t('tx.kind'), t('tx.signer'), { label: t('tx.nonce'), num: true }, t('tx.applied')], txs.map((x, i) => [i, x]), ([i, x]) => [
      String(i), txLink(x.id), L('txkind', x.kind), keyShort(x.signer), str(x.nonce), outcomeNode(x.applied)])
    : empty(t('block.notxs')));
  const cert = b.certificate;
  const signerNames = summary && summary.certificate ? summary.certificate.signers : null;
  const certSection = section(t('cert.title'), cert
    ? [h('p', null, t('cert.text', { n: (cert.signatures || []).length, v: str(cert.view) })),
      table([t('cert.validator'), t('cert.time'), t('cert.sig')], (cert.signatures || []).map((x, i) => [i, x]), ([i, x]) => [
        signerNames && signerNames[i] ? h('span', null, orgLink(signerNames[i]), ' ', mono('#' + str(x.validator))) : t('validator.n', { n: str(x.validator) }),
        timeEl(x.time), keyShort(x.signature)])]
    : empty(t('cert.missing')));
  return h('div', { class: 'page' }, h('h1', null, t('block.n', { n: str(hd.height) })), pager, section(t('block.header'), header), txSection, certSection);
}

// ------------------------------------------------------------------ programs

const BAL = ['deposited', 'available', 'committed', 'released', 'settled', 'returned'];
const BAL_CLS = { deposited: 'c-deposited', available: 'c-available', committed: 'c-committed', released: 'c-released', settled: 'c-settled', returned: 'c-returned' };

function allocation(p) {
  const b = p.balances || {};
  const cur = str(p.currency);
  const dec = Number(p.decimals) || 0;
  const R = big(b.released);
  const S = big(b.settled);
  const segs = [
    { cls: 'c-available', value: big(b.available), label: t('bal.available') + t('colon') + money(b.available, cur, dec) },
    { cls: 'c-committed', value: big(b.committed), label: t('bal.committed') + t('colon') + money(b.committed, cur, dec) },
    { cls: 'c-settled', value: S, label: t('bal.settled') + t('colon') + money(S, cur, dec) },
    { cls: 'c-unsettled', value: R > S ? R - S : 0n, label: t('bal.unsettled') + t('colon') + money(R > S ? R - S : 0n, cur, dec) },
    { cls: 'c-returned', value: big(b.returned), label: t('bal.returned') + t('colon') + money(b.returned, cur, dec) },
  ];
  return stackBar(segs, big(b.deposited), t('chart.balances', { p: str(p.title) || str(p.id) }) + t('colon') + segs.map((x) => x.label).join('; '));
}

const ALLOC_LEGEND = () => legend([['c-available', t('bal.available')], ['c-committed', t('bal.committed')], ['c-settled', t('bal.settled')], ['c-unsettled', t('bal.unsettled')], ['c-returned', t('bal.returned')]]);

async function pagePrograms(ctx) {
  ctx.title = t('programs.title');
  const [r] = await Promise.all([allPages('/v1/programs', 500, LIST_PAGE_CAP), loadOrgs()]);
  if (!r.ok) throw new ApiError(r);
  programsById = new Map(r.items.map((p) => [str(p.id), p]));
  const cards = r.items.map((p) => {
    const b = p.balances || {};
    const pid = str(p.id);
    return h('article', { class: 'card program-card', 'data-program': pid },
      h('h2', null, a(route('programs', pid), str(p.title) || pid), ' ', statusBadge('status', p.status)),
      h('p', { class: 'sub' }, mono(pid), ' · ', t('prog.owner'), t('colon'), orgLink(p.owner), ' · ', str(p.currency), ' · ', regionLink(p.region_scope)),
      h('dl', { class: 'balances compact' }, BAL.map((k) => h('div', { class: 'bal ' + BAL_CLS[k] },
        h('dt', null, t('bal.' + k)), h('dd', null, moneyFig(k, b[k], p.currency, p.decimals, { 'data-program': pid }))))),
      allocation(p));
  });
  return h('div', { class: 'page' }, h('h1', null, t('programs.title')),
    r.items.length ? [h('p', { class: 'sub' }, t('programs.alloc') + t('colon')), ALLOC_LEGEND(), cards] : empty(t('programs.none')),
    r.capped ? note(t('capped', { pages: r.pages, n: r.items.length })) : null);
}

/** A program's trace, every page up to the cap, lists joined. */
function loadTrace(id) {
  return loadPagedTrace('/v1/programs/' + encodeURIComponent(id) + '/trace', ['ledger', 'releases', 'anomalies']);
}

/** A trace that comes in pages (ADR 019): the first page's records, and
 * each of `lists` joined over every page up to the cap. */
async function loadPagedTrace(path, lists) {
  let out = null;
  let after = null;
  for (let pages = 1; ; pages++) {
    const r = await api(withQuery(path, { limit: 1000, after }));
    if (!r.ok) return Object.assign({ ok: false }, r, { partial: out });
    const d = r.data;
    if (!out) {
      out = Object.assign({}, d, { capped: false });
      for (const k of lists) out[k] = Array.isArray(d[k]) ? d[k].slice() : [];
    } else {
      for (const k of lists) if (Array.isArray(d[k])) out[k].push(...d[k]);
    }
    after = d.next;
    if (!after) break;
    if (pages >= LIST_PAGE_CAP) { out.capped = true; break; }
  }
  delete out.next;
  return { ok: true, data: out };
}

/** The program's plans with condition checks; on an older node, the plans
 * named in the ledger, unchecked. */
async function loadPlans(id, trace) {
  const r = missing.has('plans') ? { ok: false, status: 404, problem: { detail: 'no route' } } : await allPages('/v1/programs/' + encodeURIComponent(id) + '/plans', 20, LIST_PAGE_CAP);
  if (r.ok || !routeMissing(r)) return r;
  missing.add('plans');
  const ids = new Set();
  if (trace.ok) for (const e of trace.data.ledger) if (e.plan) ids.add(str(e.plan));
  const plans = await Promise.all([...ids].slice(0, 50).map((p) => api('/v1/plans/' + encodeURIComponent(p))));
  return { ok: true, fallback: true, items: plans.filter((x) => x.ok).map((x) => ({ plan: x.data, approved: null, tranches: null })) };
}

async function pageProgram(ctx) {
  const id = ctx.args[0];
  ctx.title = id;
  const [pr, trace] = await Promise.all([api('/v1/programs/' + encodeURIComponent(id)), loadTrace(id), loadOrgs(), loadPrograms()]);
  const p = need(pr);
  const plans = await loadPlans(id, trace);
  ctx.title = str(p.title) || id;
  const cur = str(p.currency);
  const dec = Number(p.decimals) || 0;
  const b = p.balances || {};
  const M = (v) => money(v, cur, dec);
  const pid = str(p.id);
  const policy = p.policy || {};
  const head = h('header', { class: 'page-head' },
    h('h1', null, str(p.title) || pid, ' ', statusBadge('status', p.status)),
    h('p', { class: 'sub mono' }, pid));
  const info = facts([
    [t('prog.owner'), orgLink(p.owner)],
    [t('prog.funders'), join((p.funding_orgs || []).map(orgLink))],
    [t('prog.unit'), cur + ' · ' + t('prog.decimals', { n: dec })],
    [t('prog.ceiling'), figure('budget-ceiling', p.budget_ceiling, M(p.budget_ceiling), { 'data-program': pid })],
    [t('prog.policy'), h('span', null, t('prog.policy.text', { k: str(policy.threshold), n: (policy.orgs || []).length }), ' ', join((policy.orgs || []).map(orgLink)))],
    [t('prog.scope'), regionLink(p.region_scope)],
    [t('prog.created'), heightLink(p.created_height)],
    [t('prog.apps'), a(route('applications') + '?program=' + encodeURIComponent(pid), t('prog.apps'))],
  ]);
  // (a) balances
  const D = big(b.deposited);
  const conserved = big(b.available) + big(b.committed) + big(b.released) + big(b.returned) === D && big(b.settled) <= big(b.released);
  const balTable = h('dl', { class: 'balances' }, BAL.map((k) => h('div', { class: 'bal ' + BAL_CLS[k] },
    h('dt', null, t('bal.' + k)), h('dd', null, moneyFig(k, b[k], cur, dec, { 'data-program': pid })))));
  const balChart = barChart(t('chart.balances', { p: str(p.title) || pid }), BAL.map((k) => ({ label: t('bal.' + k), bars: [{ value: big(b[k]), text: M(b[k]), cls: BAL_CLS[k] }] })));
  const balances = section(t('prog.balances'), balTable, h('div', { class: 'chart-box' }, balChart),
    note(conserved ? t('prog.conserved') : t('prog.notconserved'), conserved ? 'ok' : 'bad'));
  // (b) flow
  const releases = trace.ok ? trace.data.releases : [];
  const flow = section(t('prog.flow'), D > 0n ? [h('div', { class: 'chart-box wide' }, flowChart(p, releases)), note(t('prog.flow.note'))] : empty(t('prog.flow.none')));
  // (c) plans
  const planSection = section(t('prog.plans'), plans.ok
    ? (plans.items.length ? [plans.fallback ? note(t('prog.plans.fallback')) : null, plans.items.map((pv) => planCard(pv, cur, dec)),
      plans.capped ? note(t('capped', { pages: plans.pages, n: plans.items.length })) : null] : empty(t('prog.plans.none')))
    : problemBox(plans.problem));
  // (d) releases and ledger, (e) anomalies
  const capNote = trace.ok && trace.data.capped ? note(t('prog.trace.capped', { n: LIST_PAGE_CAP }), 'bad') : null;
  const relSection = section(t('prog.releases'), trace.ok ? [capNote, releasesTable(trace.data.releases, { program: p })] : problemBox(trace.problem));
  const ledSection = section(t('prog.ledger'), trace.ok ? ledgerTable(trace.data.ledger, { program: p }) : problemBox(trace.problem));
  const anSection = section(t('prog.anomalies'), trace.ok ? anomaliesTable(trace.data.anomalies, t('prog.anomalies.none')) : problemBox(trace.problem));
  return h('div', { class: 'page' }, head, section(t('details'), info), balances, flow, planSection, relSection, ledSection, anSection);
}

function join(nodes) {
  const out = [];
  nodes.forEach((n, i) => { if (i) out.push(t('sep')); out.push(n); });
  return out.length ? h('span', null, out) : '—';
}

function trancheStatus(st) {
  const [k, v] = tagOf(st);
  if (k === 'pending') return v && v.held ? statusBadge('tranche', 'held') : statusBadge('tranche', 'pending');
  if (k === 'released') return h('span', null, statusBadge('tranche', 'released'), ' ', t('release.n', { n: str(v && v.release) }));
  return statusBadge('tranche', k);
}

function planCard(pv, cur, dec) {
  const plan = pv.plan || {};
  const approved = pv.approved === null || pv.approved === undefined
    ? (plan.approvals || []).length >= (Number(str(plan.approvals_needed)) || 0)
    : !!pv.approved;
  const needN = Number(str(plan.approvals_needed)) || 0;
  const have = (plan.approvals || []).length;
  let total = 0n;
  for (const tr of plan.tranches || []) total += big(tr.amount);
  const views = new Map((pv.tranches || []).map((x) => [str(x.id), x]));
  const rows = (plan.tranches || []).map((tr) => ({ tr, view: views.get(str(tr.id)) }));
  return h('article', { class: 'plan' },
    h('h3', null, t('plan.title', { id: str(plan.id) })),
    facts([
      [t('plan.app'), plan.application ? appLink(plan.application) : null],
      [t('plan.total'), figure('plan-total', total.toString(), money(total, cur, dec), { 'data-plan': str(plan.id) })],
      [t('plan.created'), heightLink(plan.created_height)],
      [t('plan.approvals'), have ? join((plan.approvals || []).map((x) => orgLink(x.org))) : null],
    ]),
    note(approved ? t('plan.approved') : t('plan.needs', { n: Math.max(0, needN - have), have, need: needN }), approved ? 'ok' : 'bad'),
    table([t('tr.id'), { label: t('amount'), num: true }, t('recipient'), t('status'), t('tr.condition'), t('tr.why')], rows, ({ tr, view: tv }) => [
      mono(str(tr.id)),
      figure('tranche', tr.amount, money(tr.amount, cur, dec), { 'data-plan': str(plan.id), 'data-tranche': str(tr.id) }),
      recipientNode(tr.recipient),
      trancheStatus(tr.status),
      condCode(tv ? tv.condition : typeof tr.condition === 'string' ? tr.condition : JSON.stringify(tr.condition), 'cond'),
      whyNode(tr, tv, approved),
    ], { cls: 'tranches' }));
}

/** A condition in the condition language, 64-hex ids shortened (the full
 * text stays in the tooltip). */
function condCode(text, cls) {
  const full = str(text);
  return h('code', { class: cls || null, title: /[0-9a-f]{64}/.test(full) ? full : null }, full.replace(/[0-9a-f]{64}/g, (x) => short(x)));
}

function whyNode(tr, tv, approved) {
  const [k, v] = tagOf(tr.status);
  if (k !== 'pending') return '—';
  if (!tv) return h('span', { class: 'muted' }, t('tr.noeval'));
  const leaves = h('ul', { class: 'leaves' }, (tv.leaves || []).map((l) => h('li', { class: l.holds ? 'holds' : 'nothold' },
    h('span', { class: 'mark', 'aria-hidden': 'true' }, l.holds ? '✓' : '✗'), ' ', condCode(l.condition), ' ',
    h('span', { class: 'visually-hidden' }, l.holds ? t('tr.holds') : t('tr.nothold')))));
  let verdict = null;
  if (tv.holds && v && v.held) verdict = note(t('tr.held'), 'bad');
  else if (tv.holds && !approved) verdict = note(t('tr.waitapproval'), 'bad');
  else if (tv.holds) verdict = note(t('tr.will'), 'ok');
  return h('div', null, leaves, verdict);
}

function releasesTable(list, opts) {
  if (!list.length) return empty(t('prog.releases.none'));
  const o = opts || {};
  const sorted = list.slice().sort((x, y) => (big(y.id) > big(x.id) ? 1 : big(y.id) < big(x.id) ? -1 : 0));
  const cols = [t('rel.id')].concat(o.program ? [] : [t('program')]).concat([{ label: t('amount'), num: true }], o.figure ? [] : [t('recipient')], [t('rel.source'), t('time'), t('rel.settled'), t('rel.overdue')]);
  return table(cols, sorted, (r) => {
    const amt = o.program ? money(r.amount, o.program.currency, o.program.decimals) : moneyOf(r.program, r.amount);
    const [sk, sv] = tagOf(r.source);
    const fig = o.figure ? figure(o.figure, r.amount, amt, Object.assign({ 'data-release': str(r.id) }, sk === 'entitlement' && sv ? { 'data-period': str(sv.period) } : {}))
      : figure('release', r.amount, amt, { 'data-release': str(r.id) });
    return [mono('#' + str(r.id))].concat(o.program ? [] : [programLink(r.program)], [fig], o.figure ? [] : [recipientNode(r.recipient)], [
      sourceText(r.source), h('span', null, timeEl(r.time), ' ', heightLink(r.height)),
      settlementNode(r), r.overdue_flagged ? badge(t('overdue.yes'), 'bad') : t('no')]);
  }, { cls: 'releases' });
}

function ledgerTable(list, opts) {
  if (!list.length) return empty(t('prog.ledger.none'));
  const o = opts || {};
  return table([t('led.seq')].concat(o.program ? [] : [t('program')]).concat([t('time'), t('led.flow'), { label: t('amount'), num: true }, t('led.from'), t('led.to'), t('led.ref'), t('led.tx')]), list, (e) => {
    const dec = o.program ? o.program.decimals : unitOf(e.program) ? unitOf(e.program).decimals : decimalsFor(str(e.currency));
    const reversal = e.flow === 'commitment-cancelled' || e.flow === 'funds-returned';
    const refs = [];
    if (e.plan) refs.push(t('app.plan') + ' ' + str(e.plan) + (e.tranche ? ' / ' + str(e.tranche) : ''));
    if (e.entitlement) refs.push(t('src.ent', { ent: str(e.entitlement), period: str(e.period) }));
    if (e.release !== null && e.release !== undefined) refs.push(t('release.n', { n: str(e.release) }));
    return [mono(str(e.seq))].concat(o.program ? [] : [programLink(e.program)]).concat([
      h('span', null, timeEl(e.time), ' ', heightLink(e.height)),
      h('span', { class: 'flow-' + str(e.flow) }, L('flow', e.flow)),
      h('span', { class: reversal ? 'reversal' : null }, (reversal ? '−' : '') + money(e.amount, e.currency, dec)),
      partyNode(e.from), partyNode(e.to), refs.join(' · ') || '—', e.tx ? txLink(e.tx) : h('span', { class: 'muted' }, t('led.auto'))]);
  }, { cls: 'ledger' });
}

/** What an anomaly is about, in words; `rel` maps release ids to releases
 * (for amounts). */
function anomalyDetail(kind, rel) {
  const [code, f] = tagOf(kind);
  const x = f || {};
  const relMoney = (id, v) => { const r = rel && rel.get(str(id)); return r ? moneyOf(r.program, v) : t('minor.units', { n: str(v) }); };
  switch (code) {
    case 'conflicting-attestation':
      return h('span', null, t('ak.conflict', { claim: str(x.claim), a: orgName(x.first_org), va: attestText(x.first), b: orgName(x.second_org), vb: attestText(x.second) }));
    case 'duplicate-household': return t('ak.dup', { a: orgName(x.first_by), b: orgName(x.second_by) });
    case 'ineligible-recipient': return h('span', null, t('ak.inelig', { p: str(x.program), reason: str(x.reason) }));
    case 'settlement-mismatch': return t('ak.mismatch', { r: str(x.release), e: relMoney(x.release, x.expected), g: relMoney(x.release, x.got) });
    case 'settlement-overdue': {
      const r = rel && rel.get(str(x.release));
      return h('span', null, t('ak.overdue', { r: str(x.release), t: fmtTime(x.released_at), d: fmtDuration(x.deadline_ms) }),
        r ? [h('br'), t('ak.amount', { a: moneyOf(r.program, r.amount) })] : null);
    }
    case 'cross-check': return t('ak.cross', { rule: str(x.rule), desc: str(x.description) });
    default: return '';
  }
}

function attestText(v) {
  const [k, x] = tagOf(v);
  return k === 'hash' ? 'hash:' + short(x) : k ? k + ':' + str(x) : '';
}

function orgName(id) {
  const o = orgsById.get(str(id));
  return o && str(o.name) ? str(o.name) : str(id);
}

function anomalyResolution(an) {
  const [k, v] = tagOf(an.status);
  if (k === 'resolved' && v) {
    return h('div', null, t('anom.resolvedby', { org: orgName(v.org), h: str(v.height) }), ' ', heightLink(v.height),
      v.note ? h('blockquote', null, str(v.note)) : null, h('div', { class: 'small' }, keyShort(v.by)));
  }
  const fr = an.first_review;
  return h('div', null, fr ? [t('anom.firstreview', { org: orgName(fr.org), h: str(fr.height) }), fr.note ? h('blockquote', null, str(fr.note)) : null] : null,
    h('div', { class: 'small warn' }, t('anom.holding')));
}

function anomaliesTable(list, none, rel) {
  if (!list.length) return empty(none || t('anom.none'));
  return table(['#', t('status'), t('subject'), t('kind'), t('details'), t('anom.raised'), t('anom.resolution')], list, (an) => {
    const [k] = tagOf(an.status);
    const [code] = tagOf(an.kind);
    return { attrs: { class: 'anomaly-' + k, 'data-anomaly': str(an.id) }, cells: [mono('#' + str(an.id)), statusBadge('anomstatus', k), subjectNode(an.subject),
      h('span', null, L('anomaly', code), h('br'), h('code', { class: 'small' }, code)), anomalyDetail(an.kind, rel),
      h('span', null, timeEl(an.raised_time), ' ', heightLink(an.raised_height)), anomalyResolution(an)] };
  }, { cls: 'anomalies' });
}

// ------------------------------------------------------------------ applications

function votesSummary(app) {
  const votes = Object.values(app.votes || {});
  const yes = votes.filter((v) => v && v.approve).length;
  return t('app.votes.count', { a: yes, r: votes.length - yes });
}

async function pageApplications(ctx) {
  ctx.title = t('apps.title');
  const program = ctx.query.get('program') || '';
  const [first] = await Promise.all([somePage('/v1/applications', { program, limit: 100 }), loadPrograms(), loadOrgs()]);
  const page = need(first);
  const select = h('select', { id: 'app-program' },
    h('option', { value: '' }, t('apps.allprograms')),
    [...programsById.values()].map((p) => h('option', { value: str(p.id), selected: str(p.id) === program }, (str(p.title) || str(p.id)) + ' (' + str(p.id) + ')')));
  if (program && !programsById.has(program)) select.appendChild(h('option', { value: program, selected: true }, program));
  select.addEventListener('change', () => go(select.value ? route('applications') + '?program=' + encodeURIComponent(select.value) : route('applications')));
  const holder = h('div');
  const cols = [t('id'), t('program'), t('app.applicant'), t('region'), { label: t('app.requested'), num: true }, t('status'), t('app.votes'), t('app.submitted')];
  const row = (x) => [appLink(x.id), programLink(x.program), orgLink(x.applicant), regionLink(x.region),
    unitOf(x.program) ? moneyFig('requested', x.requested, unitOf(x.program).currency, unitOf(x.program).decimals, { 'data-application': str(x.id) }) : figure('requested', x.requested, t('minor.units', { n: str(x.requested) }), { 'data-application': str(x.id) }),
    statusBadge('appstatus', x.status), votesSummary(x), heightLink(x.submitted_height)];
  const items = Array.isArray(page.items) ? page.items : [];
  let next = page.next;
  const more = h('button', { type: 'button', class: 'more' }, t('more'));
  const paint = () => {
    holder.replaceChildren(items.length ? table(cols, items, row) : empty(t('apps.none')));
    if (next) holder.appendChild(more);
  };
  more.addEventListener('click', async () => {
    more.disabled = true;
    const r = await somePage('/v1/applications', { program, limit: 100, after: next });
    more.disabled = false;
    if (!r.ok) { holder.appendChild(problemBox(r.problem)); return; }
    items.push(...(r.data.items || []));
    next = r.data.next;
    paint();
  });
  paint();
  return h('div', { class: 'page' }, h('h1', null, t('apps.title')),
    h('div', { class: 'filters' }, h('label', { for: 'app-program' }, t('apps.filter')), ' ', select), section(null, holder));
}

async function pageApplication(ctx) {
  const id = ctx.args[0];
  ctx.title = t('app.title', { id });
  const [ar, tr] = await Promise.all([api('/v1/applications/' + encodeURIComponent(id)), loadPagedTrace('/v1/applications/' + encodeURIComponent(id) + '/trace', ['attestations', 'releases', 'ledger', 'anomalies']), loadOrgs(), loadPrograms()]);
  const app = need(ar);
  const trace = tr.ok ? tr.data : null;
  const prog = (trace && trace.program) || programsById.get(str(app.program)) || null;
  const cur = prog ? str(prog.currency) : '';
  const dec = prog ? Number(prog.decimals) || 0 : 0;
  const M = (v) => (prog ? money(v, cur, dec) : t('minor.units', { n: str(v) }));
  const head = h('header', { class: 'page-head' }, h('h1', null, t('app.title', { id: str(app.id) }), ' ', statusBadge('appstatus', app.status)), h('p', { class: 'sub' }, str(app.purpose)));
  const info = facts([
    [t('program'), programLink(app.program)],
    [t('app.applicant'), orgLink(app.applicant)],
    [t('region'), regionLink(app.region)],
    [t('app.requested'), figure('requested', app.requested, M(app.requested), { 'data-application': str(app.id) })],
    [t('app.purpose'), str(app.purpose)],
    [t('app.doc'), hexFull(app.doc_hash)],
    [t('app.plan'), app.plan ? h('span', null, mono(str(app.plan)), ' · ', a(route('programs', str(app.program)), t('prog.plans'))) : null],
    [t('app.submitted'), heightLink(app.submitted_height)],
  ]);
  // Votes by organisation, and what the program's policy still needs.
  const votes = app.votes || {};
  const policy = prog && prog.policy ? prog.policy : null;
  const policyOrgs = policy ? (policy.orgs || []).map(str) : [];
  const voters = Object.keys(votes);
  const orgsShown = policyOrgs.concat(voters.filter((o) => !policyOrgs.includes(o)));
  // Organisation ids are ledger data: `constructor` is a valid one, so
  // votes are read as own properties only.
  const vote = (o) => (Object.prototype.hasOwnProperty.call(votes, o) ? votes[o] : null);
  const voteRows = orgsShown.map((o) => [o, vote(o)]);
  let verdict;
  if (policy) {
    const need = Number(str(policy.threshold)) || 0;
    const have = policyOrgs.filter((o) => vote(o) && vote(o).approve).length;
    const waiting = policyOrgs.filter((o) => !vote(o));
    verdict = have >= need ? note(t('app.policy.met', { have, need }), 'ok')
      : h('p', { class: 'note note-bad' }, t('app.policy.needs', { n: need - have, have, need }), ' ', join(waiting.map(orgLink)));
  } else {
    verdict = note(t('app.policy.unknown'));
  }
  const voteSection = section(t('app.votes'), verdict, voteRows.length
    ? table([t('org'), t('app.vote'), t('app.voter'), t('height'), t('note')], voteRows, ([o, v]) => [orgLink(o),
      v ? (v.approve ? badge(t('vote.approve'), 'ok') : badge(t('vote.reject'), 'bad')) : badge(t('vote.waiting'), 'wait'),
      v ? keyShort(v.by) : '—', v ? heightLink(v.height) : '—', v && v.note ? str(v.note) : '—'], { rowHeader: true })
    : empty(t('app.novotes')));
  const parts = [head, section(t('details'), info), voteSection];
  if (!tr.ok) {
    parts.push(section(t('app.money'), problemBox(tr.problem)));
  } else {
    if (trace.plan) {
      const views = missing.has('plans') ? { ok: false } : await allPages('/v1/programs/' + encodeURIComponent(str(app.program)) + '/plans', 20, LIST_PAGE_CAP);
      if (routeMissing(views)) missing.add('plans');
      const pv = views.ok ? views.items.find((x) => x.plan && str(x.plan.id) === str(trace.plan.id)) : null;
      parts.push(section(t('prog.plans'), planCard(pv || { plan: trace.plan, approved: null, tranches: null }, cur, dec)));
    }
    parts.push(section(t('prog.releases'), releasesTable(trace.releases || [], { program: prog || null })));
    parts.push(section(t('prog.ledger'), ledgerTable(trace.ledger || [], { program: prog || null })));
    parts.push(section(t('app.attest'), attestTable(trace.attestations || [])));
    parts.push(section(t('prog.anomalies'), anomaliesTable(trace.anomalies || [])));
  }
  return h('div', { class: 'page' }, parts);
}

function attestTable(list) {
  if (!list.length) return empty(t('app.attest.none'));
  return table([t('att.claim'), t('att.value'), t('att.by'), t('tx.signer'), t('height')], list, (x) => [
    mono(str(x.claim)), mono(attestText(x.value)), orgLink(x.org), keyShort(x.by), heightLink(x.height)]);
}

// ------------------------------------------------------------------ anomalies

async function pageAnomalies(ctx) {
  ctx.title = t('anom.title');
  const open = ctx.query.get('open') === 'true';
  const [first] = await Promise.all([somePage('/v1/anomalies', { open: open ? 'true' : null, limit: 100 }), loadOrgs(), loadPrograms()]);
  const page = need(first);
  const items = Array.isArray(page.items) ? page.items : [];
  let next = page.next;
  const rel = await releasesFor(items);
  const toggle = h('div', { class: 'toggle', role: 'group', 'aria-label': t('anom.filter') },
    h('a', { href: route('anomalies'), class: 'toggle-btn', 'aria-pressed': open ? 'false' : 'true', 'data-filter': 'all' }, t('anom.all')),
    h('a', { href: route('anomalies') + '?open=true', class: 'toggle-btn', 'aria-pressed': open ? 'true' : 'false', 'data-filter': 'open' }, t('anom.openonly')));
  const holder = h('div');
  const more = h('button', { type: 'button', class: 'more' }, t('more'));
  const paint = () => {
    const nOpen = items.filter((x) => tagOf(x.status)[0] === 'open').length;
    holder.replaceChildren(
      h('p', { class: 'counts' }, tn('anom.count', { open: countFig('anomalies-open', nOpen), resolved: countFig('anomalies-resolved', items.length - nOpen) })),
      anomaliesTable(items, t('anom.none'), rel));
    if (next) holder.appendChild(more);
  };
  more.addEventListener('click', async () => {
    more.disabled = true;
    const r = await somePage('/v1/anomalies', { open: open ? 'true' : null, limit: 100, after: next });
    more.disabled = false;
    if (!r.ok) { holder.appendChild(problemBox(r.problem)); return; }
    const added = r.data.items || [];
    const extra = await releasesFor(added);
    for (const [k, v] of extra) rel.set(k, v);
    items.push(...added);
    next = r.data.next;
    paint();
  });
  paint();
  return h('div', { class: 'page' }, h('h1', null, t('anom.title')), toggle, section(null, holder));
}

/** The releases anomalies name (for their amounts and currency). */
async function releasesFor(anomalies) {
  const ids = new Set();
  for (const an of anomalies) {
    const [, f] = tagOf(an.kind);
    if (f && f.release !== undefined && f.release !== null) ids.add(str(f.release));
  }
  const list = [...ids].slice(0, 30);
  const got = await Promise.all(list.map((id) => api('/v1/releases/' + encodeURIComponent(id))));
  const m = new Map();
  got.forEach((r, i) => { if (r.ok) m.set(list[i], r.data); });
  return m;
}

// ------------------------------------------------------------------ households

async function pageHousehold(ctx) {
  const id = ctx.args[0];
  ctx.title = t('hh.title');
  const [hr, tr] = await Promise.all([api('/v1/households/' + encodeURIComponent(id)), loadPagedTrace('/v1/households/' + encodeURIComponent(id) + '/trace', ['attestations', 'releases', 'ledger', 'anomalies']), loadPrograms(), loadOrgs()]);
  const hh = need(hr);
  const hid = str(hh.id);
  const head = h('header', { class: 'page-head' }, h('h1', null, t('hh.title'), ' ', statusBadge('status', hh.status)),
    h('p', { class: 'sub' }, t('hh.privacy')),
    lastStatus ? h('p', { class: 'print-only small' }, str(lastStatus.chain_id) + ' · ' + t('regions.asof', { h: str(lastStatus.height), time: fmtTime(lastStatus.last_block_time_ms) })) : null,
    h('p', { class: 'no-print' }, printButton()));
  const info = facts([
    [t('hh.id'), hexFull(hid)],
    [t('region'), regionLink(hh.region)],
    [t('status'), L('status', hh.status)],
    [t('hh.regby'), orgLink(hh.registered_by)],
    [t('hh.regat'), heightLink(hh.registered_height)],
    [t('hh.updated'), heightLink(hh.updated_height)],
  ]);
  const parts = [head, section(t('details'), info)];
  if (!tr.ok) {
    parts.push(section(t('hh.payments'), problemBox(tr.problem)));
    parts.push(proofSection(hid, [], tr.problem));
  } else {
    const trace = tr.data;
    if (trace.capped) parts.push(note(t('prog.trace.capped', { n: LIST_PAGE_CAP }), 'bad'));
    const releases = (trace.releases || []).slice().sort((x, y) => Number(str(x.time)) - Number(str(y.time)));
    const unit = (r) => unitOf(r.program) || { currency: '', decimals: 0 };
    // Totals per currency, and payments per period.
    const totals = new Map();
    const periods = new Map();
    for (const r of releases) {
      const u = unit(r);
      const tt = totals.get(u.currency) || { received: 0n, settled: 0n, decimals: u.decimals };
      tt.received += big(r.amount);
      if (r.settlement && str(r.settlement.status) === 'confirmed') tt.settled += big(r.amount);
      totals.set(u.currency, tt);
      const [sk, sv] = tagOf(r.source);
      const pk = sk === 'entitlement' && sv ? str(sv.period) : '';
      const key = pk + '|' + u.currency;
      const pe = periods.get(key) || { period: pk, currency: u.currency, decimals: u.decimals, sum: 0n, count: 0 };
      pe.sum += big(r.amount);
      pe.count += 1;
      periods.set(key, pe);
    }
    const totalFacts = facts([...totals.entries()].flatMap(([cur, tt]) => [
      [t('hh.received') + (totals.size > 1 ? ' (' + cur + ')' : ''), moneyFig('received-total', tt.received.toString(), cur, tt.decimals, { 'data-currency': cur })],
      [t('hh.settledtotal') + (totals.size > 1 ? ' (' + cur + ')' : ''), moneyFig('settled-total', tt.settled.toString(), cur, tt.decimals, { 'data-currency': cur })],
    ]).concat(totals.size ? [] : [[t('hh.received'), figure('received-total', '0', fmtCount(0), { 'data-currency': '' })]]));
    const plist = [...periods.values()].sort((x, y) => (x.period === '' ? 1 : y.period === '' ? -1 : Number(x.period) - Number(y.period)));
    const plabel = (pe) => (pe.period === '' ? t('hh.noperiod') : t('period.n', { n: pe.period })) + (totals.size > 1 ? ' (' + pe.currency + ')' : '');
    const perPeriod = plist.length
      ? [table([t('period'), { label: t('hh.count'), num: true }, { label: t('amount'), num: true }], plist, (pe) => [plabel(pe), fmtCount(pe.count),
        figure('period-total', pe.sum.toString(), money(pe.sum, pe.currency, pe.decimals), Object.assign({ 'data-currency': pe.currency }, pe.period !== '' ? { 'data-period': pe.period } : {}))], { rowHeader: true }),
      h('div', { class: 'chart-box' }, barChart(t('chart.periods'), plist.map((pe) => ({ label: plabel(pe), bars: [{ value: pe.sum, text: money(pe.sum, pe.currency, pe.decimals), cls: 'c-released', scale: pe.currency }] }))))]
      : empty(t('hh.none'));
    parts.push(section(t('hh.payments'), totalFacts, releases.length ? releasesTable(releases, { figure: 'payment' }) : empty(t('hh.none'))));
    parts.push(section(t('hh.perperiod'), perPeriod));
    const anomalies = trace.anomalies || [];
    const anyOpen = anomalies.some((x) => tagOf(x.status)[0] === 'open');
    const rel = new Map(releases.map((r) => [str(r.id), r]));
    parts.push(section(t('hh.holds'), anyOpen ? note(t('hh.held'), 'bad') : null, anomaliesTable(anomalies, t('hh.noanom'), rel)));
    parts.push(section(t('app.attest'), attestTable(trace.attestations || [])));
    parts.push(proofSection(hid, releases, null));
  }
  return h('div', { class: 'page household-card' }, parts);
}

// ------------------------------------------------------------------ payment proofs and receipts

const PROOF_PATH = '/v1/proofs/payment';
const QR_PATH = '/v1/proofs/payment/qr.svg';
const VERIFY_CMD = 'aidledger proof verify FILE --genesis genesis.json';
const RECEIPT_CMD = 'aidledger proof verify FILE --genesis genesis.json --receipt CODE';

/** The query naming one subsidy payment, for the proof and its QR code. */
function proofQuery(hid, r) {
  const [, sv] = tagOf(r.source);
  return { household: hid, program: str(r.program), period: str(sv.period), entitlement: str(sv.entitlement), release: str(r.id) };
}

/** The household's subsidy payments, each with its proof to download and
 * a printable receipt; `problem` when the trace could not be read. */
function proofSection(hid, releases, problem) {
  const ents = releases.filter((r) => {
    const [k, v] = tagOf(r.source);
    return k === 'entitlement' && v && str(v.period) !== '';
  });
  const body = problem ? problemBox(problem)
    : ents.length ? h('ul', { class: 'proofs' }, ents.map((r) => proofItem(hid, r))) : empty(t('proof.none'));
  return h('section', { class: 'card proof', 'data-section': 'proof' }, h('h2', null, t('proof.title')),
    h('p', { class: 'proof-intro' }, tn('proof.intro', { cmd: h('code', null, VERIFY_CMD) })), body);
}

function proofItem(hid, r) {
  const rid = str(r.id);
  const q = proofQuery(hid, r);
  const url = withQuery(PROOF_PATH, q);
  const holder = h('div', { class: 'receipt-holder', id: 'receipt-' + rid, 'aria-live': 'polite' });
  const link = h('a', { href: url, class: 'proof-download', download: 'payment-proof-' + q.program + '-' + q.period + '-' + hid.slice(0, 8) + '.json', 'data-proof-download': rid },
    t('proof.download'));
  const btn = h('button', { type: 'button', class: 'receipt-btn', 'data-proof-receipt': rid, 'aria-expanded': 'false', 'aria-controls': 'receipt-' + rid }, t('proof.receipt'));
  btn.addEventListener('click', async () => {
    btn.disabled = true;
    holder.replaceChildren(h('p', { class: 'loading' }, t('loading')));
    let shown;
    try {
      const res = await api(url);
      shown = res.ok ? receiptCard(rid, res.data, withQuery(QR_PATH, q)) : problemBox(res.problem);
    } catch (e) {
      shown = problemBox({ title: t('err.internal'), detail: str(e && e.message), code: 'explorer' });
    }
    holder.replaceChildren(shown);
    btn.disabled = false;
    btn.setAttribute('aria-expanded', 'true');
  });
  const amount = figure('proof-amount', r.amount, moneyOf(r.program, r.amount), { 'data-release': rid, 'data-period': q.period });
  return h('li', { class: 'proof-item', 'data-proof': rid },
    h('div', { class: 'proof-line' }, h('strong', null, programLink(r.program)), h('span', null, t('period.n', { n: q.period })),
      amount, settlementNode(r), h('span', { class: 'muted small' }, t('release.n', { n: rid }), ' · ', heightLink(r.height))),
    h('div', { class: 'proof-actions no-print' }, link, btn),
    holder);
}

/** A receipt for one payment, from its proof: what was paid, where on the
 * chain, and the code the QR image (drawn by the node) holds. */
function receiptCard(rid, proof, qrUrl) {
  const sm = proof.summary || {};
  const code = str(proof.receipt_code);
  const settled = sm.settled === true;
  const info = facts([
    [t('receipt.household'), hexFull(sm.household)],
    [t('program'), programLink(sm.program)],
    [t('receipt.entitlement'), mono(str(sm.entitlement))],
    [t('period'), t('period.n', { n: str(sm.period) })],
    [t('rel.id'), mono('#' + str(sm.release))],
    [t('amount'), moneyFig('receipt-amount', sm.amount, sm.currency, sm.decimals, { 'data-release': rid })],
    [t('tx.block'), heightLink(sm.height)],
    [t('time'), timeEl(sm.time_ms)],
    [t('receipt.settled'), settled
      ? h('span', null, tn('receipt.settled.at', { h: sm.settlement_height !== null && sm.settlement_height !== undefined ? heightLink(sm.settlement_height) : '—' }))
      : t('receipt.unsettled')],
    [t('st.genesis'), hexFull(proof.genesis_hash)],
  ]);
  return h('article', { class: 'receipt', 'data-receipt': rid, 'data-settled': settled ? 'true' : 'false' },
    h('h3', null, t('receipt.title')),
    h('p', { class: 'receipt-chain' }, t('st.chain') + t('colon'), mono(str(proof.chain_id))),
    h('div', { class: 'receipt-body' }, info,
      h('figure', { class: 'receipt-qr' },
        h('img', { src: qrUrl, alt: t('receipt.qr') + t('colon') + code, width: 200, height: 200, 'data-qr': rid }))),
    h('p', { class: 'receipt-label' }, t('receipt.code')),
    h('pre', { class: 'receipt-code mono', 'data-receipt-code': true }, code),
    h('p', { class: 'receipt-caption' }, tn('receipt.caption', { cmd: h('code', null, RECEIPT_CMD) })),
    h('p', { class: 'no-print' }, printButton()));
}

function printButton() {
  const b = h('button', { type: 'button', class: 'print' }, t('print'));
  b.addEventListener('click', () => window.print());
  return b;
}

// ------------------------------------------------------------------ regions

function asOfLine(asOf) {
  if (!asOf) return null;
  return h('p', { class: 'sub' }, h('a', { href: route('blocks', str(asOf.height)) }, t('regions.asof', { h: str(asOf.height), time: fmtTime(asOf.time_ms) })),
    h('br'), h('span', { class: 'small' }, t('block.stateroot') + t('colon')), mono(short(asOf.state_root), str(asOf.state_root)));
}

function regionRowCells(row, withLink) {
  const cur = str(row.currency);
  const dec = decimalsFor(cur);
  const extra = { 'data-region': str(row.region), 'data-currency': cur };
  const m = (k) => (cur ? moneyFig(k, row[k], cur, dec, extra) : figure(k, row[k], '—', extra));
  return [withLink ? regionLink(row.region) : str(row.region), cur || h('span', { class: 'muted' }, t('reg.nomoney')),
    m('deposited'), m('released'), m('settled'),
    countFig('releases', row.releases, extra), countFig('households-registered-row', row.households_registered, extra), countFig('households-reached-row', row.households_reached, extra)];
}

const REGION_COLS = () => [t('reg.code'), t('currency'), { label: t('bal.deposited'), num: true }, { label: t('bal.released'), num: true }, { label: t('bal.settled'), num: true },
  { label: t('reg.releases'), num: true }, { label: t('reg.registered'), num: true }, { label: t('reg.reached'), num: true }];

function regionChart(rows) {
  const money_rows = rows.filter((r) => str(r.currency));
  if (!money_rows.length) return null;
  const groups = money_rows.map((r) => {
    const cur = str(r.currency);
    const dec = decimalsFor(cur);
    return { label: str(r.region) + ' · ' + cur, bars: [
      { value: big(r.released), text: money(r.released, cur, dec), cls: 'c-released', name: t('bal.released'), scale: cur },
      { value: big(r.settled), text: money(r.settled, cur, dec), cls: 'c-settled', name: t('bal.settled'), scale: cur }] };
  });
  return h('figure', { class: 'chart-box' }, barChart(t('regions.chart'), groups, { labelW: 210 }),
    h('figcaption', null, legend([['c-released', t('bal.released')], ['c-settled', t('bal.settled')]])));
}

function byRegion(x, y) { return str(x.region) < str(y.region) ? -1 : str(x.region) > str(y.region) ? 1 : str(x.currency) < str(y.currency) ? -1 : 1; }

async function pageRegions(ctx) {
  ctx.title = t('regions.title');
  const [r] = await Promise.all([api('/v1/reports/regions'), loadPrograms()]);
  const d = need(r);
  const rows = (d.rows || []).slice().sort(byRegion);
  const depth = (code) => str(code).split('/').length - 1;
  const body = rows.length
    ? [table(REGION_COLS(), rows, (row) => ({ attrs: { class: 'depth-' + Math.min(depth(row.region), 2) }, cells: regionRowCells(row, true) }), { rowHeader: true, cls: 'regions' }), regionChart(rows)]
    : empty(t('regions.none'));
  return h('div', { class: 'page report' }, h('header', { class: 'page-head' }, h('h1', null, t('regions.title')), asOfLine(d.as_of), h('p', { class: 'no-print' }, printButton())),
    section(null, body));
}

async function pageRegion(ctx) {
  const code = ctx.args[0];
  ctx.title = t('reg.title', { code });
  const [r] = await Promise.all([api('/v1/reports/region?code=' + encodeURIComponent(code)), loadPrograms()]);
  const d = need(r);
  const region = str(d.region) || code;
  const segs = region.split('/');
  const up = segs.slice(0, -1).map((_, i) => segs.slice(0, i + 1).join('/'));
  const rows = (d.rows || []).slice().sort(byRegion);
  const totals = d.totals || [];
  const totalsTable = totals.length
    ? table([t('currency'), { label: t('bal.deposited'), num: true }, { label: t('bal.released'), num: true }, { label: t('bal.settled'), num: true }, { label: t('reg.releases'), num: true }], totals, (x) => {
      const cur = str(x.currency);
      const dec = decimalsFor(cur);
      const extra = { 'data-currency': cur };
      const m = (name, v) => (cur ? moneyFig(name, v, cur, dec, extra) : figure(name, v, '—', extra));
      return [cur || t('reg.nomoney'), m('total-deposited', x.deposited), m('total-released', x.released), m('total-settled', x.settled), countFig('total-releases', x.releases, extra)];
    }, { rowHeader: true })
    : empty(t('reg.nomoney'));
  const hhFacts = facts([
    [t('reg.registered'), countFig('households-registered', d.households_registered, { 'data-region': region })],
    [t('reg.reached'), countFig('households-reached', d.households_reached, { 'data-region': region })],
  ]);
  return h('div', { class: 'page report' },
    h('header', { class: 'page-head' }, h('h1', null, t('reg.title', { code: region })),
      up.length ? h('p', { class: 'sub' }, t('reg.up') + t('colon'), join(up.map(regionLink))) : null,
      asOfLine(d.as_of), h('p', { class: 'no-print' }, printButton())),
    section(t('reg.totals'), totalsTable, hhFacts),
    section(t('reg.rows'), rows.length ? [table(REGION_COLS(), rows, (row) => regionRowCells(row, true), { rowHeader: true, cls: 'regions' }), regionChart(rows)] : empty(t('regions.none'))));
}

// ------------------------------------------------------------------ organisations, transactions

async function pageOrg(ctx) {
  const id = ctx.args[0];
  ctx.title = t('org.title', { id });
  const [r] = await Promise.all([api('/v1/orgs/' + encodeURIComponent(id)), loadPrograms()]);
  const o = need(r);
  const oid = str(o.id);
  ctx.title = str(o.name) || oid;
  const mine = [...programsById.values()].filter((p) => str(p.owner) === oid || (p.funding_orgs || []).map(str).includes(oid));
  return h('div', { class: 'page' },
    h('header', { class: 'page-head' }, h('h1', null, str(o.name) || oid, ' ', statusBadge('status', o.status)), h('p', { class: 'sub mono' }, oid)),
    section(t('details'), facts([[t('id'), mono(oid)], [t('org.name'), str(o.name)], [t('org.kind'), L('orgkind', o.kind)], [t('status'), L('status', o.status)]]),
      lastStatus && str(lastStatus.org) === oid ? note(t('org.thisnode'), 'ok') : null),
    section(t('org.programs'), mine.length ? table([t('program'), t('org.role'), { label: t('bal.deposited'), num: true }, { label: t('bal.released'), num: true }], mine, (p) => [
      programLink(p.id), [str(p.owner) === oid ? t('org.role.owner') : null, (p.funding_orgs || []).map(str).includes(oid) ? t('org.role.funder') : null].filter(Boolean).join(' · '),
      money((p.balances || {}).deposited, p.currency, p.decimals), money((p.balances || {}).released, p.currency, p.decimals)]) : empty(t('org.programs.none'))));
}

async function pageTx(ctx) {
  const id = ctx.args[0];
  ctx.title = t('tx.title');
  const [r] = await Promise.all([api('/v1/txs/' + encodeURIComponent(id)), loadPrograms(), loadOrgs()]);
  const x = need(r);
  const rc = x.receipt;
  const [ok, rej] = rc ? tagOf(rc.outcome) : ['', null];
  const parts = [h('header', { class: 'page-head' }, h('h1', null, t('tx.title'), ' ', statusBadge('txstate', x.status)), h('p', { class: 'sub' }, hexFull(x.id)))];
  parts.push(section(t('details'), facts([
    [t('status'), L('txstate', x.status)],
    [t('tx.block'), x.height !== null && x.height !== undefined ? heightLink(x.height) : null],
    [t('tx.index'), x.index !== null && x.index !== undefined ? str(x.index) : null],
    [t('tx.kind'), rc ? L('txkind', rc.kind) : null],
    [t('tx.signer'), rc ? hexFull(rc.signer) : null],
    [t('tx.outcome'), rc ? outcomeNode(ok === 'applied') : null],
    [t('tx.reason'), rej ? h('span', null, mono(str(rej.code)), ': ', str(rej.reason)) : null],
    [t('tx.next'), x.next_step ? str(x.next_step) : null],
  ]), str(x.status) === 'unknown' ? note(t('tx.unknown')) : null));
  if (rc) {
    const events = rc.events || [];
    parts.push(section(t('tx.events'), events.length ? h('ul', { class: 'events' }, events.map(eventItem)) : empty(t('tx.noevents'))));
  }
  return h('div', { class: 'page' }, parts);
}

function eventItem(ev) {
  const [type, f] = tagOf(ev.body);
  const li = h('li', null, h('strong', null, L('event', type)));
  if (type === 'money' && f) {
    const dec = unitOf(f.program) ? unitOf(f.program).decimals : decimalsFor(str(f.currency));
    addKids(li, [t('colon'), L('flow', f.flow), ' ', money(f.amount, f.currency, dec), ' · ', partyNode(f.from), ' → ', partyNode(f.to), ' · ', programLink(f.program)]);
    return li;
  }
  if (f && typeof f === 'object') {
    const bits = Object.entries(f).map(([k, v]) => {
      const val = k === 'program' ? programLink(v) : k === 'application' ? appLink(v) : k === 'household' ? hhLink(v) : k === 'org' ? orgLink(v)
        : k === 'subject' ? subjectNode(v) : (k === 'total' || k === 'amount') && f.program && unitOf(f.program) ? moneyOf(f.program, v)
          : k === 'status' ? L('appstatus', v) : typeof v === 'object' && v !== null ? mono(clip(JSON.stringify(v), 120)) : /^[0-9a-f]{64}$/.test(str(v)) ? keyShort(v) : str(v);
      return h('span', { class: 'ev-field', 'data-field': k }, h('span', { class: 'muted' }, L('evfield', k) + ' '), val);
    });
    addKids(li, [t('colon'), bits]);
  }
  return li;
}

// ------------------------------------------------------------------ start

function start() {
  applyStatic();
  for (const b of document.querySelectorAll('[data-lang]')) b.addEventListener('click', () => setLang(b.getAttribute('data-lang')));
  const form = document.getElementById('search-form');
  const input = document.getElementById('search');
  if (form && input) {
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const q = input.value.trim();
      if (q) search(q);
    });
  }
  window.addEventListener('hashchange', () => render(true));
  const skip = document.getElementById('skip-link');
  if (skip) skip.addEventListener('click', (e) => { e.preventDefault(); view().focus(); });
  document.addEventListener('visibilitychange', () => { if (!document.hidden) refreshStrip(); });
  // Nothing reaches the console: an unexpected failure shows on the page.
  window.addEventListener('unhandledrejection', (e) => { e.preventDefault(); showCrash(e.reason); });
  window.addEventListener('error', (e) => { e.preventDefault(); showCrash(e.error || e.message); });
  render();
  refreshStrip();
  loadOrgs().then(() => paintStrip());
}

function showCrash(err) {
  const v = view();
  if (!v) return;
  v.dataset.page = 'error';
  v.replaceChildren(errorPage(err instanceof Error ? err : new Error(str(err))));
  v.removeAttribute('aria-busy');
  v.dataset.loaded = 'true';
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
else start();

})();
