"""The demo data set: enterprises in five application modes, their templates,
and linked identifiers, seeded through the same services the API uses."""

from __future__ import annotations

import json
import random
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta

from registry import store
from registry.errors import NotFound
from registry.services import Actor, Registry
from registry.services.enterprises import (
    CREDIT_CODE_CHARSET,
    EnterpriseApplication,
    HostedConfig,
    NewUser,
    credit_code_check_char,
)
from registry.services.identifiers import EXISTS, SnmsRecord
from registry.services.templates import TemplateSpec
from registry.templates import ItemChange, RecordValue

from .progress import Progress

DEMO_ADMIN = ("demo-admin", "demo-secret")
DEMO_USER_PASSWORD = "Demo@2026"  # noqa: S105 - published demo credential
BATCH_SIZE = 512
_SEED = 20261125


@dataclass(frozen=True)
class Mode:
    key: str
    name: str
    version: str
    industry: tuple[str, str, str, str]
    items: tuple[tuple[str, str, bool, bool], ...]
    """(idType, display name, required, public) per template item, from index 2000."""
    keywords: tuple[str, ...]


MODES = (
    Mode(
        "trace",
        "产品追溯",
        "trace-1.0",
        ("C", "39", "397", "3971"),
        (
            ("URL", "产品主页", True, True),
            ("productName", "产品名称", True, True),
            ("model", "型号", True, True),
            ("batchNo", "批次号", True, True),
            ("productionDate", "生产日期", True, True),
            ("factory", "生产工厂", False, True),
            ("parentBatch", "所属批次标识", False, True),
            ("parts", "零部件标识", False, True),
            ("inspector", "质检员", False, False),
        ),
        ("精密电子", "汽车零部件", "智能装备", "光电器件", "新能源电池", "家电制造", "医疗器械"),
    ),
    Mode(
        "quality",
        "质量管控",
        "qc-1.0",
        ("C", "34", "344", "3441"),
        (
            ("URL", "检验报告", True, True),
            ("productHandle", "被检产品标识", True, True),
            ("inspectionDate", "检验日期", True, True),
            ("result", "检验结论", True, True),
            ("defectRate", "不良率", False, True),
            ("standard", "执行标准", False, True),
            ("certificateNo", "证书编号", False, True),
            ("inspector", "检验员", False, False),
        ),
        ("检测认证", "质量技术", "计量检测", "材料检验", "品质服务", "标准检测"),
    ),
    Mode(
        "equipment",
        "设备全生命周期管理",
        "equip-1.0",
        ("C", "35", "351", "3511"),
        (
            ("URL", "设备档案", True, True),
            ("equipmentName", "设备名称", True, True),
            ("model", "型号", True, True),
            ("manufacturer", "制造商", True, True),
            ("installDate", "安装日期", True, True),
            ("location", "安装位置", False, True),
            ("maintenanceIntervalDays", "保养周期(天)", False, True),
            ("lastMaintenance", "最近保养", False, True),
            ("healthScore", "健康度", False, True),
            ("telemetryEndpoint", "遥测接口", False, False),
        ),
        ("重型机械", "数控机床", "工业机器人", "压缩机", "风电装备", "电梯设备", "注塑机械"),
    ),
    Mode(
        "logistics",
        "供应链物流",
        "ship-1.0",
        ("G", "54", "543", "5430"),
        (
            ("URL", "运单跟踪", True, True),
            ("shipmentNo", "运单号", True, True),
            ("origin", "始发地", True, True),
            ("destination", "目的地", True, True),
            ("carrier", "承运商", True, True),
            ("status", "运输状态", True, True),
            ("eta", "预计到达", False, True),
            ("containerNo", "集装箱号", False, True),
            ("consignee", "收货人", False, False),
        ),
        ("供应链管理", "国际物流", "冷链物流", "仓储服务", "港口物流", "快运"),
    ),
    Mode(
        "energy",
        "能耗与碳排放",
        "energy-1.0",
        ("D", "44", "441", "4411"),
        (
            ("URL", "能耗报表", True, True),
            ("meterId", "计量表号", True, True),
            ("site", "计量点位", True, True),
            ("periodStart", "统计起始", True, True),
            ("electricityKWh", "用电量(kWh)", True, True),
            ("gasM3", "用气量(m3)", False, True),
            ("co2Kg", "碳排放(kgCO2)", True, True),
            ("methodology", "核算方法", False, True),
        ),
        ("热电", "能源科技", "节能服务", "新能源", "碳资产管理", "综合能源"),
    ),
)

CITIES = (
    ("苏州", "320500"),
    ("无锡", "320200"),
    ("宁波", "330200"),
    ("佛山", "440600"),
    ("青岛", "370200"),
    ("合肥", "340100"),
    ("成都", "510100"),
    ("武汉", "420100"),
    ("西安", "610100"),
    ("长沙", "430100"),
    ("厦门", "350200"),
    ("天津", "120100"),
)


@dataclass(frozen=True)
class DemoEnterprise:
    number: int
    mode: Mode
    name: str
    slug: str
    city: str
    region: str
    credit_code: str

    @property
    def prefix(self) -> str:
        return f"88.100.{self.number}"

    @property
    def username(self) -> str:
        return f"ent{self.number}"


def credit_code(rng: random.Random, region: str) -> str:
    body = "91" + region + "".join(rng.choice(CREDIT_CODE_CHARSET[:31]) for _ in range(9))
    return body + credit_code_check_char(body)


def demo_enterprises(count: int) -> list[DemoEnterprise]:
    rng = random.Random(_SEED)
    result = []
    for n in range(1, count + 1):
        mode = MODES[(n - 1) % len(MODES)]
        city, region = CITIES[(n * 7) % len(CITIES)]
        keyword = mode.keywords[((n - 1) // len(MODES)) % len(mode.keywords)]
        name = f"{city}{keyword}{'有限公司' if n % 3 else '股份有限公司'}"
        result.append(
            DemoEnterprise(n, mode, name, f"{mode.key}{n}", city, region, credit_code(rng, region))
        )
    return result


def _application(ent: DemoEnterprise) -> EnterpriseApplication:
    from registry.secrets import sha256_hex

    basic = {
        "orgName": ent.name,
        "orgCrtType": 1,
        "orgCrtCode": ent.credit_code,
        "orgAddrProvince": ent.region[:2] + "0000",
        "orgAddrCity": ent.region,
        "industryCategory": ent.mode.industry[0],
        "industrySpecific": ent.mode.industry[1],
        "entPrefix": ent.prefix,
    }
    return EnterpriseApplication(
        org_name=ent.name,
        org_crt_type=1,
        org_crt_code=ent.credit_code,
        contact_name="联系人" + str(ent.number),
        contact_phone=f"1380000{ent.number:04d}",
        new_user=NewUser(
            ent.username,
            sha256_hex(DEMO_USER_PASSWORD),
            f"{ent.username}@{ent.slug}.example.com",
            f"1390000{ent.number:04d}",
        ),
        org_nature=1 + ent.number % 5,
        org_desc=f"{ent.name}，{ent.mode.name}应用示范企业。",
        org_addr=f"{ent.city}市高新区创新大道{ent.number}号",
        industry_category=ent.mode.industry[0],
        industry_specific=ent.mode.industry[1],
        website=f"https://www.{ent.slug}.example.com",
        contact_email=f"contact@{ent.slug}.example.com",
        ent_prefix=ent.prefix,
        filing={"entBasicInfo": basic},
    )


def _template(ent: DemoEnterprise) -> TemplateSpec:
    mode = ent.mode
    return TemplateSpec(
        prefix=ent.prefix,
        version=mode.version,
        items=tuple(
            ItemChange(
                name=name,
                id_type=id_type,
                id_index=2000 + i,
                required=required,
                state=1,
                value_type="string",
                min_length=1,
                max_length=255,
                public=public,
            )
            for i, (id_type, name, required, public) in enumerate(mode.items)
        ),
        industry_category=mode.industry[0],
        industry_specific=mode.industry[1],
        industry_trade=mode.industry[2],
        industry_subclass=mode.industry[3],
        carrier_type=1,
        description=f"{mode.name}元数据模板",
    )


def example_handle(ent: DemoEnterprise, i: int) -> str:
    """The demo suffixes are fixed, so documentation and tests can name them."""
    suffix = {
        "trace": "SN-2026-{:06d}",
        "quality": "QC-2026-{:06d}",
        "equipment": "EQ-{:06d}",
        "logistics": "WB-2026-{:06d}",
        "energy": "EM-2026-{:06d}",
    }[ent.mode.key]
    return f"{ent.prefix}/{suffix.format(i)}"


def batch_handle(ent: DemoEnterprise, i: int) -> str:
    return f"{ent.prefix}/BATCH-2026-{i:04d}"


def _records(
    ent: DemoEnterprise, per_enterprise: int, peers: list[DemoEnterprise], rng: random.Random
) -> Iterator[SnmsRecord]:
    mode = ent.mode
    indexes = {id_type: 2000 + i for i, (id_type, *_rest) in enumerate(mode.items)}
    base_day = date(2026, 1, 5)

    def record(handle: str, fields: dict[str, str]) -> SnmsRecord:
        values = tuple(RecordValue(indexes[k], k, v) for k, v in fields.items())
        return SnmsRecord(handle, mode.version, values)

    url = f"https://{ent.slug}.example.com"
    if mode.key == "trace":
        batches = max(1, per_enterprise // 16)
        suppliers = [p for p in peers if p.mode.key == "trace" and p is not ent]
        for b in range(1, batches + 1):
            day = base_day + timedelta(days=b * 3)
            yield record(
                batch_handle(ent, b),
                {
                    "URL": f"{url}/batch/{b}",
                    "productName": "生产批次",
                    "model": "BATCH",
                    "batchNo": f"B{day:%Y%m%d}-{b:03d}",
                    "productionDate": day.isoformat(),
                    "factory": f"{ent.city}一号工厂",
                },
            )
        for i in range(1, per_enterprise - batches + 1):
            b = 1 + (i - 1) % batches
            day = base_day + timedelta(days=b * 3)
            fields = {
                "URL": f"{url}/product/SN-2026-{i:06d}",
                "productName": f"{mode.keywords[ent.number % len(mode.keywords)]}组件",
                "model": f"M{ent.number:02d}-{100 + i % 7}",
                "batchNo": f"B{day:%Y%m%d}-{b:03d}",
                "productionDate": day.isoformat(),
                "factory": f"{ent.city}一号工厂",
                "parentBatch": batch_handle(ent, b),
                "inspector": f"QC-{rng.randint(100, 999)}",
            }
            if suppliers:
                parts = [
                    example_handle(suppliers[(i + k) % len(suppliers)], 1 + (i + k) % 50)
                    for k in range(2)
                ]
                fields["parts"] = ",".join(parts)
            yield record(example_handle(ent, i), fields)
        return
    for i in range(1, per_enterprise + 1):
        day = base_day + timedelta(days=i % 300)
        if mode.key == "quality":
            target = [p for p in peers if p.mode.key == "trace"]
            fields = {
                "URL": f"{url}/report/QC-2026-{i:06d}",
                "productHandle": example_handle(target[i % len(target)], 1 + i % 200),
                "inspectionDate": day.isoformat(),
                "result": "合格" if i % 23 else "不合格",
                "defectRate": f"{rng.uniform(0, 1.5):.2f}%",
                "standard": "GB/T 2828.1-2012",
                "certificateNo": f"CNAS-{ent.number:02d}{i:06d}",
                "inspector": f"检验员{rng.randint(1, 40)}",
            }
        elif mode.key == "equipment":
            fields = {
                "URL": f"{url}/asset/EQ-{i:06d}",
                "equipmentName": f"{mode.keywords[i % len(mode.keywords)]}-{i:04d}",
                "model": f"X{ent.number}-{i % 12}",
                "manufacturer": ent.name,
                "installDate": (day - timedelta(days=700)).isoformat(),
                "location": f"{ent.city}工厂{1 + i % 4}号车间",
                "maintenanceIntervalDays": str(30 * (1 + i % 6)),
                "lastMaintenance": day.isoformat(),
                "healthScore": str(rng.randint(62, 100)),
                "telemetryEndpoint": f"mqtt://telemetry.{ent.slug}.example.com/eq/{i}",
            }
        elif mode.key == "logistics":
            dest = CITIES[(i + ent.number) % len(CITIES)][0]
            fields = {
                "URL": f"{url}/track/WB-2026-{i:06d}",
                "shipmentNo": f"WB{ent.number:02d}{i:08d}",
                "origin": ent.city,
                "destination": dest,
                "carrier": ent.name,
                "status": ("已揽收", "运输中", "已到达", "已签收")[i % 4],
                "eta": (day + timedelta(days=3)).isoformat(),
                "containerNo": f"CSNU{rng.randint(1000000, 9999999)}",
                "consignee": f"收货人{rng.randint(1, 500)}",
            }
        else:
            kwh = rng.uniform(1200, 98000)
            fields = {
                "URL": f"{url}/meter/EM-2026-{i:06d}",
                "meterId": f"MTR-{ent.number:02d}-{i:05d}",
                "site": f"{ent.city}厂区{1 + i % 5}号配电房",
                "periodStart": day.isoformat(),
                "electricityKWh": f"{kwh:.1f}",
                "gasM3": f"{rng.uniform(0, 5000):.1f}",
                "co2Kg": f"{kwh * 0.5703:.1f}",
                "methodology": "GB/T 32150-2015",
            }
        yield record(example_handle(ent, i), fields)


def registration(ent: DemoEnterprise, suffix: str) -> dict[str, object]:
    """The SNMS body (``POST /identityv2/data``) of a new identifier ``<prefix>/<suffix>``
    filled like the enterprise's demo records, so that it passes its template."""
    peers = [*demo_enterprises(len(MODES)), ent]  # records may point at other modes' ones
    record = next(_records(ent, 1, peers, random.Random(_SEED + ent.number)))
    return {
        "handle": f"{ent.prefix}/{suffix}",
        "templateVersion": record.template_version,
        "value": [
            {
                "index": v.index,
                "type": v.type,
                "auth": v.auth,
                "data": {"format": "string", "value": v.value},
            }
            for v in record.values
        ],
    }


@dataclass(frozen=True)
class DemoSummary:
    enterprises: int
    modes: int
    identifiers: int
    seeded: bool


async def seed(
    registry: Registry, *, enterprises: int, identifiers: int, admin: tuple[str, str]
) -> DemoSummary:
    """Seed the demo data set once; a database that has it already is kept."""
    if enterprises < 1:
        raise ValueError("the demo needs at least one enterprise")
    login = await registry.accounts.login(*admin)
    actor = Actor(principal=login.principal, remote="demo")
    if (
        await registry.enterprises.count_served() >= enterprises
        and await _count_identifiers(registry) >= identifiers
    ):
        return DemoSummary(
            await registry.enterprises.count_served(),
            len(MODES),
            await _count_identifiers(registry),
            False,
        )
    # Seeding is deterministic and every step is skipped when already done, so
    # a first start that was interrupted resumes where it stopped.
    ents = demo_enterprises(enterprises)
    with Progress("seeding", total=len(ents), unit="enterprises") as progress:
        for ent in ents:
            async with registry.services.read() as conn:
                known = await store.get_prefix(conn, ent.prefix)
            if known is None:
                await registry.enterprises.apply(actor, _application(ent))
                await registry.enterprises.configure(actor, ent.prefix, HostedConfig(1))
            if not await _has_template(registry, actor, ent):
                await registry.templates.create(actor, _template(ent))
            progress.update(1)
    per_enterprise = -(-identifiers // enterprises)
    pending: list[SnmsRecord] = []
    with Progress("seeding", total=per_enterprise * len(ents), unit="identifiers") as progress:
        for ent in ents:
            rng = random.Random(_SEED + ent.number)
            for record in _records(ent, per_enterprise, ents, rng):
                pending.append(record)
                if len(pending) == BATCH_SIZE:
                    progress.update(await _flush(registry, actor, pending))
            progress.update(await _flush(registry, actor, pending))
    return DemoSummary(
        await registry.enterprises.count_served(),
        len({e.mode.key for e in ents}),
        await _count_identifiers(registry),
        True,
    )


async def _has_template(registry: Registry, actor: Actor, ent: DemoEnterprise) -> bool:
    try:
        await registry.templates.get(actor, ent.prefix, ent.mode.version)
    except NotFound:
        return False
    return True


async def _flush(registry: Registry, actor: Actor, pending: list[SnmsRecord]) -> int:
    """File the pending records; how many there were."""
    if not pending:
        return 0
    results = await registry.identifiers.batch_create(actor, pending)
    # "Exists" means an earlier, interrupted or smaller seeding wrote it: keep it.
    failed = [r for r in results if not r.ok and r.message != EXISTS]
    if failed:
        raise RuntimeError(f"demo seeding failed for {failed[0].handle}: {failed[0].message}")
    count = len(pending)
    pending.clear()
    return count


async def _count_identifiers(registry: Registry) -> int:
    async with registry.services.read() as conn:
        return await store.count_identifiers(conn)


def lookup_page(base_url: str) -> str:
    return f"{base_url}/{example_handle(demo_enterprises(1)[0], 1)}?noredirect"


def examples(
    base_url: str, admin: tuple[str, str], dig: Callable[[str], str] | None = None
) -> list[str]:
    """Shell commands that work against the running demo, printed at start;
    ``dig`` makes the command that asks the DNS zone for a handle's URI."""
    ent = demo_enterprises(1)[0]
    login = json.dumps({"username": admin[0], "password": admin[1]})
    token = (
        f"TOKEN=$(curl -s -X POST {base_url}/identity/token -H 'Content-Type: application/json' "
        f"-d {shlex.quote(login)} | python3 -c 'import sys,json;print(json.load(sys.stdin)"
        '["data"]["token"])\')'
    )
    auth = '-H "Authorization: Bearer $TOKEN"'
    new_record = json.dumps(
        {
            "handle": f"{ent.prefix}/SN-DEMO-NEW-1",
            "templateVersion": ent.mode.version,
            "value": [
                {"index": 2000 + i, "type": t, "auth": "", "data": {"format": "string", "value": v}}
                for i, (t, v) in enumerate(
                    [
                        ("URL", "https://example.com/new"),
                        ("productName", "演示产品"),
                        ("model", "M-1"),
                        ("batchNo", "B-NEW"),
                        ("productionDate", "2026-11-25"),
                    ]
                )
            ],
        },
        ensure_ascii=False,
    )
    handle = example_handle(ent, 1)
    return [
        f"curl -s {base_url}/api/handles/{handle}",
        f"curl -s -o /dev/null -w '%{{http_code}} %{{redirect_url}}\\n' {base_url}/{handle}",
        token,
        f"curl -s {auth} '{base_url}/identityv2/data/detail?handle={example_handle(ent, 1)}'",
        f"curl -s {auth} '{base_url}/snms/api/prefix/page?currentPage=1&pageSize=5'",
        f"curl -s {auth} '{base_url}/snms/api/v5/template?prefix={ent.prefix}"
        f"&version={ent.mode.version}'",
        f"curl -s {auth} '{base_url}/snms/api/v3/ent/page?currentPage=1&pageSize=5'",
        *([dig(handle)] if dig else []),
        f"curl -s -X POST {auth} -H 'Content-Type: application/json' {base_url}/identityv2/data "
        f"-d {shlex.quote(new_record)}",
    ]
