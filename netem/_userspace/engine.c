/*
 * netem userspace engine: holds NFQUEUE'd IPv4 packets until their due time and drops,
 * corrupts, duplicates or reorders them as the shape of their (source, destination) pair
 * says. One thread, one epoll loop: the netfilter queue socket, a timerfd armed at the
 * earliest due time (binary heap), and the control pipe on stdin.
 *
 * Control protocol (stdin, one command a line; replies on stdout):
 *   pair SRC DST DELAY_US JITTER_US LOSS_PCT CORRUPT_PCT DUP_PCT REORDER_PCT   stage a shape
 *   commit                       the staged pairs become the whole table   -> "ok N", or
 *                                "err ..." if a staged line was bad (then nothing changes)
 *   stats                        "stat SRC DST PACKETS BYTES DROPS HELD_SUM_US HELD_N" per
 *                                pair, "late N P50_US P99_US MAX_US", then "ok"
 *   reset_timing                 clears the lateness histogram              -> "ok"
 *   quit (or end of input)       accepts every held packet at once and exits
 * --recheck-mark M: a held packet is let go with NF_REPEAT and its mark ORed with M instead
 *   of NF_ACCEPT, so it passes the hook's rules again at its due time (a partition made
 *   while it was held drops it, as the kernel's netem, which delays before the hub, does);
 *   the rule queueing to the engine must skip packets marked M.
 * --copy-mark M: duplicates' copies are sent from a raw IP socket, marked M (the rule
 *   queueing to the engine must skip them), routed by the kernel: for the OUTPUT hook, where
 *   the next hop's MAC is the kernel's to know.
 * --copy-dev NAME: duplicates' copies are sent out of NAME (a veth whose peer is a port of
 *   the hub's bridge), marked M, so they cross the bridge and its rules at their due time as
 *   the packets let go do; without it, out of the packet's own bridge port, past the rules.
 * First line on stdout: "ready" once the queue is bound, or "error MESSAGE" and exit 1.
 *
 * --simulate: no queue, no privileges; a virtual clock driven by input lines
 *   pkt T_US ID SRC DST LEN      a packet arrives at T_US (releases all due <= T_US first)
 *   advance T_US                 releases everything due <= T_US
 * and each packet's fate is printed: "accept|drop|corrupt|dup|dup-corrupt ID T_US" (a copy
 * is printed once sent; a copy lost prints nothing).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/netfilter.h>
#include <math.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libnetfilter_queue/libnetfilter_queue.h>

#define LATE_BUCKETS 200000 /* 1 us buckets, up to 200 ms */
#define RECV_BUF (65536 + 4096)
#define RECV_BATCH 32
#define WAKE_GAP_NS 100000
#define POLL_NS 200000

/* ---- random numbers: xoshiro256**, seeded through splitmix64 ---- */
static uint64_t rng_s[4];

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(void)
{
	uint64_t result = rotl(rng_s[1] * 5, 7) * 9, t = rng_s[1] << 17;
	rng_s[2] ^= rng_s[0];
	rng_s[3] ^= rng_s[1];
	rng_s[1] ^= rng_s[2];
	rng_s[0] ^= rng_s[3];
	rng_s[2] ^= t;
	rng_s[3] = rotl(rng_s[3], 45);
	return result;
}

static double rng_unit(void) { return (double)(rng_next() >> 11) * 0x1.0p-53; } /* [0, 1) */

static int chance(double pct)
{
	if (pct <= 0)
		return 0;
	if (pct >= 100)
		return 1;
	return rng_unit() * 100.0 < pct;
}

static int normal_dist;
static double normal_spare;
static int have_spare;

static double rng_normal(void)
{
	if (have_spare) {
		have_spare = 0;
		return normal_spare;
	}
	double u, v, s;
	do {
		u = rng_unit() * 2 - 1;
		v = rng_unit() * 2 - 1;
		s = u * u + v * v;
	} while (s >= 1 || s == 0);
	s = sqrt(-2 * log(s) / s);
	normal_spare = v * s;
	have_spare = 1;
	return u * s;
}

/* ---- shape table: open addressing on (src, dst) in network byte order ---- */
struct shape {
	uint64_t key; /* 0: empty slot */
	int64_t delay_ns, jitter_ns;
	double loss, corrupt, dup, reorder;
	uint64_t packets, bytes, drops, held_sum_ns, held_n;
};

struct table {
	struct shape *slots;
	size_t mask; /* capacity - 1 */
	size_t count;
};

static struct table live_tab, staged_tab;

/* 0 marks an empty slot; the pair 0.0.0.0 -> 0.0.0.0 is refused at input */
static uint64_t pair_key(uint32_t src, uint32_t dst) { return ((uint64_t)src << 32) | dst; }

static size_t slot_of(const struct table *t, uint64_t key)
{
	return (size_t)((key * 0x9e3779b97f4a7c15ULL) >> 20) & t->mask;
}

static struct shape *tab_find(const struct table *t, uint64_t key)
{
	if (!t->count)
		return NULL;
	for (size_t i = slot_of(t, key);; i = (i + 1) & t->mask) {
		if (t->slots[i].key == key)
			return &t->slots[i];
		if (!t->slots[i].key)
			return NULL;
	}
}

static int tab_reserve(struct table *t, size_t want)
{
	if ((want + 1) * 2 <= t->mask + 1 && t->slots)
		return 0;
	size_t cap = 16;
	while (cap < (want + 1) * 2)
		cap *= 2;
	struct shape *old = t->slots;
	size_t oldcap = old ? t->mask + 1 : 0;
	t->slots = calloc(cap, sizeof *t->slots);
	if (!t->slots) {
		t->slots = old;
		return -1;
	}
	t->mask = cap - 1;
	for (size_t i = 0; i < oldcap; i++) {
		if (!old[i].key)
			continue;
		size_t j = slot_of(t, old[i].key);
		while (t->slots[j].key)
			j = (j + 1) & t->mask;
		t->slots[j] = old[i];
	}
	free(old);
	return 0;
}

static struct shape *tab_put(struct table *t, uint64_t key)
{
	if (tab_reserve(t, t->count + 1))
		return NULL;
	size_t i = slot_of(t, key);
	while (t->slots[i].key && t->slots[i].key != key)
		i = (i + 1) & t->mask;
	if (!t->slots[i].key) {
		t->slots[i].key = key;
		t->count++;
	}
	return &t->slots[i];
}

static void tab_clear(struct table *t)
{
	free(t->slots);
	t->slots = NULL;
	t->mask = 0;
	t->count = 0;
}

/* ---- held packets: binary min-heap on (due, seq) ---- */
enum kind { K_ACCEPT, K_CORRUPT, K_DUP, K_DUP_CORRUPT };

struct item {
	int64_t due, arrival;
	uint64_t seq;
	uint64_t key;
	uint32_t id;
	uint32_t len;
	uint32_t mark; /* the packet's own mark, kept under recheck_mark */
	int ifindex;
	uint8_t kind;
	uint8_t *data; /* owned copy for K_CORRUPT and the copies */
};

static struct item *heap;
static size_t heap_n, heap_cap;
static uint64_t seq_counter;

static int item_less(const struct item *a, const struct item *b)
{
	return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static int heap_push(struct item it)
{
	if (heap_n == heap_cap) {
		size_t cap = heap_cap ? heap_cap * 2 : 1024;
		struct item *h = realloc(heap, cap * sizeof *h);
		if (!h)
			return -1;
		heap = h;
		heap_cap = cap;
	}
	size_t i = heap_n++;
	while (i) {
		size_t p = (i - 1) / 2;
		if (!item_less(&it, &heap[p]))
			break;
		heap[i] = heap[p];
		i = p;
	}
	heap[i] = it;
	return 0;
}

static struct item heap_pop(void)
{
	struct item top = heap[0], last = heap[--heap_n];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= heap_n)
			break;
		if (c + 1 < heap_n && item_less(&heap[c + 1], &heap[c]))
			c++;
		if (!item_less(&heap[c], &last))
			break;
		heap[i] = heap[c];
		i = c;
	}
	if (heap_n)
		heap[i] = last;
	return top;
}

/* ---- globals of the running engine ---- */
static int simulate;
static int64_t sim_now;
static struct nfq_handle *nfq_h;
static struct nfq_q_handle *nfq_qh;
static int packet_fd = -1;
static int copy_ifindex; /* --copy-dev: 0 = each copy out of its packet's port */
static int raw_fd = -1;   /* --copy-mark: copies routed from here */
static uint32_t late_hist[LATE_BUCKETS];
static uint64_t late_n, late_max_us;

static int64_t now_ns(void)
{
	if (simulate)
		return sim_now;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Verdicts are gathered into one buffer of netlink messages and sent with one sendto()
   (the kernel handles every message in it): one system call for a burst, not one each. */
static char vbuf[1 << 17];
static size_t vlen;
static int nfd = -1;
static uint16_t queue_num;
static uint32_t recheck_mark; /* 0: held packets are accepted, not sent through the rules again */

static void verdict_flush(void)
{
	if (!vlen)
		return;
	struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
	sendto(nfd, vbuf, vlen, 0, (struct sockaddr *)&kernel, sizeof kernel);
	vlen = 0;
}

/* A verdict; with NF_REPEAT the packet's mark becomes `mark` (NFQA_MARK). */
static void verdict(uint32_t id, uint32_t v, uint32_t mark, uint32_t len, const uint8_t *buf,
		    const char *what)
{
	if (simulate) {
		printf("%s %" PRIu32 " %" PRId64 "\n", what, id, sim_now / 1000);
		return;
	}
	size_t hdr = NLMSG_ALIGN(sizeof(struct nlmsghdr)) + NLMSG_ALIGN(sizeof(struct nfgenmsg));
	size_t vattr = NLA_ALIGN(NLA_HDRLEN + sizeof(struct nfqnl_msg_verdict_hdr));
	size_t mattr = v == NF_REPEAT ? NLA_ALIGN(NLA_HDRLEN + sizeof(uint32_t)) : 0;
	size_t need = hdr + vattr + mattr + (len ? NLA_ALIGN(NLA_HDRLEN + len) : 0);
	if (need > sizeof vbuf) {
		if (v == NF_REPEAT)
			nfq_set_verdict2(nfq_qh, id, v, mark, len, buf);
		else
			nfq_set_verdict(nfq_qh, id, v, len, buf);
		return;
	}
	if (vlen + need > sizeof vbuf)
		verdict_flush();
	char *m = vbuf + vlen;
	memset(m, 0, need);
	struct nlmsghdr *nlh = (struct nlmsghdr *)m;
	nlh->nlmsg_len = (uint32_t)need;
	nlh->nlmsg_type = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_VERDICT;
	nlh->nlmsg_flags = NLM_F_REQUEST;
	struct nfgenmsg *g = (struct nfgenmsg *)(m + NLMSG_ALIGN(sizeof *nlh));
	g->nfgen_family = AF_UNSPEC;
	g->version = NFNETLINK_V0;
	g->res_id = htons(queue_num);
	struct nlattr *a = (struct nlattr *)(m + hdr);
	a->nla_len = NLA_HDRLEN + sizeof(struct nfqnl_msg_verdict_hdr);
	a->nla_type = NFQA_VERDICT_HDR;
	struct nfqnl_msg_verdict_hdr vh = {.verdict = htonl(v), .id = htonl(id)};
	memcpy((char *)a + NLA_HDRLEN, &vh, sizeof vh);
	if (mattr) {
		a = (struct nlattr *)(m + hdr + vattr);
		a->nla_len = NLA_HDRLEN + sizeof(uint32_t);
		a->nla_type = NFQA_MARK;
		uint32_t be = htonl(mark);
		memcpy((char *)a + NLA_HDRLEN, &be, sizeof be);
	}
	if (len) {
		a = (struct nlattr *)(m + hdr + vattr + mattr);
		a->nla_len = (uint16_t)(NLA_HDRLEN + len);
		a->nla_type = NFQA_PAYLOAD;
		memcpy((char *)a + NLA_HDRLEN, buf, len);
	}
	vlen += need;
}

static void send_dup(const struct item *it)
{
	if (simulate) {
		printf("%s %" PRIu32 " %" PRId64 "\n", it->kind == K_DUP ? "dup" : "dup-corrupt",
		       it->id, sim_now / 1000);
		return;
	}
	if (raw_fd >= 0) {
		struct sockaddr_in to = {.sin_family = AF_INET};
		memcpy(&to.sin_addr, it->data + 16, 4);
		sendto(raw_fd, it->data, it->len, MSG_DONTWAIT, (struct sockaddr *)&to, sizeof to);
		return;
	}
	int ifindex = copy_ifindex ? copy_ifindex : it->ifindex;
	if (packet_fd < 0 || ifindex <= 0 || it->len < 20)
		return;
	struct sockaddr_ll sll = {.sll_family = AF_PACKET,
				  .sll_protocol = htons(ETH_P_IP),
				  .sll_ifindex = ifindex,
				  .sll_halen = 6};
	/* netem derives every host's MAC from its address: 02:00 and the four address bytes */
	sll.sll_addr[0] = 0x02;
	sll.sll_addr[1] = 0x00;
	memcpy(sll.sll_addr + 2, it->data + 16, 4);
	sendto(packet_fd, it->data, it->len, MSG_DONTWAIT, (struct sockaddr *)&sll, sizeof sll);
}

static void release(struct item *it, int64_t now)
{
	struct shape *s = tab_find(&live_tab, it->key);
	if (s && it->kind != K_DUP && it->kind != K_DUP_CORRUPT) {
		s->held_sum_ns += (uint64_t)(now - it->arrival);
		s->held_n++;
	}
	int64_t late_us = (now - it->due) / 1000;
	if (late_us < 0)
		late_us = 0;
	late_hist[late_us < LATE_BUCKETS ? late_us : LATE_BUCKETS - 1]++;
	late_n++;
	if ((uint64_t)late_us > late_max_us)
		late_max_us = (uint64_t)late_us;
	uint32_t v = recheck_mark ? NF_REPEAT : NF_ACCEPT, mark = it->mark | recheck_mark;
	switch (it->kind) {
	case K_ACCEPT:
		verdict(it->id, v, mark, 0, NULL, "accept");
		break;
	case K_CORRUPT:
		verdict(it->id, v, mark, it->len, it->data, "corrupt");
		break;
	case K_DUP:
	case K_DUP_CORRUPT:
		send_dup(it);
		break;
	}
	free(it->data);
}

static void release_due(int64_t upto)
{
	while (heap_n && heap[0].due <= upto) {
		struct item it = heap_pop();
		if (simulate)
			sim_now = it.due;
		release(&it, now_ns());
	}
}

static int64_t sample_delay(const struct shape *s)
{
	int64_t d = s->delay_ns;
	if (s->jitter_ns) {
		double z = normal_dist ? rng_normal() : rng_unit() * 2 - 1;
		d += (int64_t)llround(z * (double)s->jitter_ns);
	}
	return d < 0 ? 0 : d;
}

/* A copy of the packet; NULL if there is no memory. */
static uint8_t *copied(const uint8_t *data, uint32_t tot_len)
{
	uint8_t *out = malloc(tot_len);
	if (out)
		memcpy(out, data, tot_len);
	return out;
}

/* A copy of the packet with one bit flipped past the IP header, so it still routes and
   the receiver's transport checksum catches it; NULL if there is no memory. */
static uint8_t *corrupted(const uint8_t *data, uint32_t tot_len)
{
	uint8_t *out = copied(data, tot_len);
	if (!out)
		return NULL;
	uint32_t ihl = (uint32_t)(data[0] & 15) * 4;
	uint32_t lo = tot_len > ihl ? ihl : 0;
	uint32_t bit = (uint32_t)(rng_next() % ((uint64_t)(tot_len - lo) * 8));
	out[lo + bit / 8] ^= (uint8_t)(1u << (bit % 8));
	return out;
}

/* Reordered (sent at once) or held for the shape's delay; released now if it cannot wait. */
static void hold(struct item *it, const struct shape *s, int64_t now)
{
	int64_t d = chance(s->reorder) ? 0 : sample_delay(s);
	it->due = now + d;
	if (d <= 0 || heap_push(*it)) {
		it->due = now;
		release(it, now);
	}
}

/* One queued packet: decide its fate, verdict now or hold it. */
static void on_packet(uint32_t id, const uint8_t *data, int len, int ifindex, uint32_t mark,
		      int64_t now)
{
	if (len < 20 || (data[0] >> 4) != 4) {
		verdict(id, NF_ACCEPT, 0, 0, NULL, "accept");
		return;
	}
	uint32_t src, dst;
	memcpy(&src, data + 12, 4);
	memcpy(&dst, data + 16, 4);
	struct shape *s = tab_find(&live_tab, pair_key(src, dst));
	if (!s) {
		verdict(id, NF_ACCEPT, 0, 0, NULL, "accept");
		return;
	}
	uint32_t tot_len = (uint32_t)data[2] << 8 | data[3];
	int whole = (uint32_t)len >= tot_len;
	s->packets++;
	s->bytes += tot_len;
	/* As netem: a duplicate is decided first, then loss, which takes one of the two
	   packets (a duplicated packet lost goes on alone). The copy then goes through the
	   shape again, undoubled, as netem enqueues it at the root once more: its own loss,
	   corruption, reordering and delay. */
	int dup = whole && chance(s->dup);
	if (chance(s->loss)) {
		if (!dup) {
			s->drops++;
			verdict(id, NF_DROP, 0, 0, NULL, "drop");
			return;
		}
		dup = 0;
	}
	struct item it = {.arrival = now, .seq = seq_counter++, .key = s->key, .id = id,
			  .mark = mark, .kind = K_ACCEPT};
	if (whole && chance(s->corrupt)) {
		it.data = corrupted(data, tot_len);
		if (it.data) {
			it.len = tot_len;
			it.kind = K_CORRUPT;
		}
	}
	hold(&it, s, now);
	if (dup && !chance(s->loss)) {
		int bad = chance(s->corrupt);
		struct item d = {.arrival = now, .seq = seq_counter++, .key = s->key, .id = id,
				 .len = tot_len, .ifindex = ifindex,
				 .kind = bad ? K_DUP_CORRUPT : K_DUP};
		d.data = bad ? corrupted(data, tot_len) : copied(data, tot_len);
		if (d.data)
			hold(&d, s, now);
	}
}

static int nfq_cb(struct nfq_q_handle *qh, struct nfgenmsg *msg, struct nfq_data *nfa, void *arg)
{
	(void)qh;
	(void)msg;
	(void)arg;
	struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
	if (!ph)
		return 0;
	uint32_t id = ntohl(ph->packet_id);
	unsigned char *data = NULL;
	int len = nfq_get_payload(nfa, &data);
	int ifindex = (int)nfq_get_physoutdev(nfa);
	if (!ifindex)
		ifindex = (int)nfq_get_outdev(nfa);
	/* The packet arrived when the hub's interface took it (the kernel's timestamp), not
	   when this loop got round to reading it: a busy moment must not add to its delay. */
	int64_t now = now_ns(), arrival = now;
	struct timeval tv;
	if (nfq_get_timestamp(nfa, &tv) == 0) {
		struct timespec rt;
		clock_gettime(CLOCK_REALTIME, &rt);
		int64_t age = ((int64_t)rt.tv_sec - tv.tv_sec) * 1000000000 +
			      ((int64_t)rt.tv_nsec - (int64_t)tv.tv_usec * 1000);
		if (age > 0 && age < 1000000000)
			arrival = now - age;
	}
	on_packet(id, data, len, ifindex, nfq_get_nfmark(nfa), arrival);
	return 0;
}

/* ---- control ---- */
static int parse_ip(const char *s, uint32_t *out) { return inet_pton(AF_INET, s, out) == 1 ? 0 : -1; }

static char staged_err[128];

static void commit(void)
{
	if (staged_err[0]) {
		printf("err %s; nothing changed\n", staged_err);
		staged_err[0] = 0;
		tab_clear(&staged_tab);
		return;
	}
	/* keep the counters of pairs that stay */
	for (size_t i = 0; staged_tab.count && i <= staged_tab.mask; i++) {
		struct shape *n = &staged_tab.slots[i];
		if (!n->key)
			continue;
		struct shape *o = tab_find(&live_tab, n->key);
		if (o) {
			n->packets = o->packets;
			n->bytes = o->bytes;
			n->drops = o->drops;
			n->held_sum_ns = o->held_sum_ns;
			n->held_n = o->held_n;
		}
	}
	tab_clear(&live_tab);
	live_tab = staged_tab;
	memset(&staged_tab, 0, sizeof staged_tab);
	printf("ok %zu\n", live_tab.count);
}

static uint64_t late_percentile(double q)
{
	if (!late_n)
		return 0;
	uint64_t want = (uint64_t)ceil(q * (double)late_n), acc = 0;
	if (!want)
		want = 1;
	for (uint64_t i = 0; i < LATE_BUCKETS; i++) {
		acc += late_hist[i];
		if (acc >= want)
			return i;
	}
	return LATE_BUCKETS - 1;
}

static void stats(void)
{
	char a[INET_ADDRSTRLEN], b[INET_ADDRSTRLEN];
	for (size_t i = 0; live_tab.count && i <= live_tab.mask; i++) {
		struct shape *s = &live_tab.slots[i];
		if (!s->key)
			continue;
		uint32_t src = (uint32_t)(s->key >> 32), dst = (uint32_t)s->key;
		inet_ntop(AF_INET, &src, a, sizeof a);
		inet_ntop(AF_INET, &dst, b, sizeof b);
		printf("stat %s %s %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", a, b,
		       s->packets, s->bytes, s->drops, s->held_sum_ns / 1000, s->held_n);
	}
	printf("late %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\nok\n", late_n,
	       late_percentile(0.5), late_percentile(0.99), late_max_us);
}

static int quitting;

static void control_line(char *line)
{
	char *argv[12];
	int argc = 0;
	for (char *tok = strtok(line, " \t\r"); tok && argc < 12; tok = strtok(NULL, " \t\r"))
		argv[argc++] = tok;
	if (!argc)
		return;
	const char *cmd = argv[0];
	if (!strcmp(cmd, "pair") && argc == 9) {
		uint32_t src, dst;
		char *end;
		double v[6];
		int bad = parse_ip(argv[1], &src) || parse_ip(argv[2], &dst) || !pair_key(src, dst);
		for (int i = 0; i < 6 && !bad; i++) {
			v[i] = strtod(argv[3 + i], &end);
			bad = *end || !isfinite(v[i]) || v[i] < 0 || (i >= 2 && v[i] > 100);
		}
		struct shape *s = bad ? NULL : tab_put(&staged_tab, pair_key(src, dst));
		if (!s) {
			/* reported by the commit, which then changes nothing */
			if (!staged_err[0])
				snprintf(staged_err, sizeof staged_err, "%s for %.40s -> %.40s",
					 bad ? "bad pair line" : "out of memory", argv[1], argv[2]);
			return;
		}
		s->delay_ns = (int64_t)llround(v[0] * 1000);
		s->jitter_ns = (int64_t)llround(v[1] * 1000);
		s->loss = v[2];
		s->corrupt = v[3];
		s->dup = v[4];
		s->reorder = v[5];
	} else if (!strcmp(cmd, "commit") && argc == 1) {
		commit();
	} else if (!strcmp(cmd, "stats") && argc == 1) {
		stats();
	} else if (!strcmp(cmd, "reset_timing") && argc == 1) {
		memset(late_hist, 0, sizeof late_hist);
		late_n = late_max_us = 0;
		printf("ok\n");
	} else if (!strcmp(cmd, "quit") && argc == 1) {
		quitting = 1;
	} else if (simulate && !strcmp(cmd, "pkt") && argc == 6) {
		uint32_t src, dst;
		if (parse_ip(argv[3], &src) || parse_ip(argv[4], &dst)) {
			printf("err bad pkt line\n");
			return;
		}
		int64_t t = strtoll(argv[1], NULL, 10) * 1000;
		uint32_t id = (uint32_t)strtoul(argv[2], NULL, 10);
		int len = atoi(argv[5]);
		if (len < 20 || len > 65535) {
			printf("err bad pkt length\n");
			return;
		}
		release_due(t);
		sim_now = t;
		uint8_t *pkt = calloc(1, (size_t)len);
		if (!pkt) {
			printf("err out of memory\n");
			return;
		}
		pkt[0] = 0x45;
		pkt[2] = (uint8_t)(len >> 8);
		pkt[3] = (uint8_t)len;
		memcpy(pkt + 12, &src, 4);
		memcpy(pkt + 16, &dst, 4);
		on_packet(id, pkt, len, 1, 0, t);
		free(pkt);
	} else if (simulate && !strcmp(cmd, "advance") && argc == 2) {
		int64_t t = strtoll(argv[1], NULL, 10) * 1000;
		release_due(t);
		sim_now = t;
		printf("ok\n");
	} else {
		printf("err unknown command %s\n", cmd);
	}
}

static char ctl_buf[1 << 20];
static size_t ctl_len;

/* Reads what the control pipe holds; returns 0 on end of input. */
static int control_read(int fd)
{
	for (;;) {
		if (ctl_len == sizeof ctl_buf - 1)
			ctl_len = 0; /* a line longer than the buffer: drop it */
		ssize_t n = read(fd, ctl_buf + ctl_len, sizeof ctl_buf - 1 - ctl_len);
		if (n == 0)
			return 0;
		if (n < 0)
			return errno == EAGAIN || errno == EINTR ? 1 : 0;
		ctl_len += (size_t)n;
		char *start = ctl_buf, *nl;
		while ((nl = memchr(start, '\n', ctl_len - (size_t)(start - ctl_buf)))) {
			*nl = 0;
			control_line(start);
			start = nl + 1;
			if (quitting)
				break;
		}
		ctl_len -= (size_t)(start - ctl_buf);
		memmove(ctl_buf, start, ctl_len);
		fflush(stdout);
		if (quitting)
			return 0;
	}
}

static void fail(const char *msg)
{
	printf("error %s\n", msg);
	fflush(stdout);
	exit(1);
}

static volatile sig_atomic_t got_signal;
static void on_signal(int sig) { (void)sig; got_signal = 1; }

static int run_simulation(void)
{
	char line[4096];
	while (!quitting && fgets(line, sizeof line, stdin)) {
		line[strcspn(line, "\n")] = 0;
		control_line(line);
	}
	release_due(INT64_MAX);
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	const char *netns = NULL;
	const char *copy_dev = NULL;
	uint32_t copy_mark = 0;
	int raw_copies = 0;
	int queue = 0;
	uint64_t seed = 0;
	uint32_t maxlen = 65536;
	int rt_prio = 0;
	pid_t parent = getppid();
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--simulate"))
			simulate = 1;
		else if (!strcmp(argv[i], "--netns") && i + 1 < argc)
			netns = argv[++i];
		else if (!strcmp(argv[i], "--queue") && i + 1 < argc)
			queue = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
			seed = strtoull(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--maxlen") && i + 1 < argc)
			maxlen = (uint32_t)strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--normal"))
			normal_dist = 1;
		else if (!strcmp(argv[i], "--realtime") && i + 1 < argc)
			rt_prio = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--recheck-mark") && i + 1 < argc)
			recheck_mark = (uint32_t)strtoul(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--copy-dev") && i + 1 < argc)
			copy_dev = argv[++i];
		else if (!strcmp(argv[i], "--copy-mark") && i + 1 < argc) {
			copy_mark = (uint32_t)strtoul(argv[++i], NULL, 0);
			raw_copies = 1;
		}
		else
			fail("usage: engine [--simulate] [--netns PATH] [--queue N] [--seed N] "
			     "[--maxlen N] [--normal] [--realtime PRIO] [--recheck-mark M] "
			     "[--copy-dev NAME] [--copy-mark M]");
	}
	for (int i = 0; i < 4; i++)
		rng_s[i] = splitmix64(&seed);
	if (simulate)
		return run_simulation();

	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	prctl(PR_SET_TIMERSLACK, 1UL); /* wake at the due time, not up to 50 us after */
	if (rt_prio > 0) {
		/* a busy machine must not make packets late: run before ordinary processes (the
		   engine sleeps between events, and RT throttling caps it anyway); best effort */
		struct sched_param sp = {.sched_priority = rt_prio};
		if (sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &sp) < 0 &&
		    setpriority(PRIO_PROCESS, 0, -10) < 0) { /* unprivileged: run as we are */ }
	}

	if (netns) {
		int fd = open(netns, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || setns(fd, CLONE_NEWNET) < 0) {
			char msg[512];
			snprintf(msg, sizeof msg, "cannot enter network namespace %s: %s", netns,
				 strerror(errno));
			fail(msg);
		}
		close(fd);
	}
	nfq_h = nfq_open();
	if (!nfq_h)
		fail("cannot open nfnetlink queue (needs CAP_NET_ADMIN)");
	if (nfq_bind_pf(nfq_h, AF_INET) < 0)
		fail("cannot bind nfnetlink queue to AF_INET (needs CAP_NET_ADMIN)");
	nfq_qh = nfq_create_queue(nfq_h, (uint16_t)queue, nfq_cb, NULL);
	if (!nfq_qh) {
		char msg[128];
		snprintf(msg, sizeof msg, "cannot bind queue %d (another program holds it?)", queue);
		fail(msg);
	}
	/* Whole packets, always: copies and corruption need them, and changing the mode later
	   would mean a synchronous netlink query while packets stream in on the same socket. */
	if (nfq_set_mode(nfq_qh, NFQNL_COPY_PACKET, 0xffff) < 0)
		fail("cannot set queue copy mode");
	nfq_set_queue_maxlen(nfq_qh, maxlen);
	nfd = nfq_fd(nfq_h);
	queue_num = (uint16_t)queue;
	int one = 1, rcvbuf = 16 << 20;
	setsockopt(nfd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof one);
	if (setsockopt(nfd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0)
		setsockopt(nfd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
	fcntl(nfd, F_SETFL, fcntl(nfd, F_GETFL) | O_NONBLOCK);
	packet_fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (copy_dev) {
		copy_ifindex = (int)if_nametoindex(copy_dev);
		if (!copy_ifindex) {
			char msg[512];
			snprintf(msg, sizeof msg, "no interface %s for the copies: %s", copy_dev,
				 strerror(errno));
			fail(msg);
		}
		/* the mark skips the queue's rule, as a packet let go does */
		if (packet_fd >= 0 &&
		    setsockopt(packet_fd, SOL_SOCKET, SO_MARK, &recheck_mark, sizeof recheck_mark) < 0)
			fail("cannot mark the copies (SO_MARK needs CAP_NET_ADMIN)");
	}
	if (raw_copies) {
		raw_fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
		if (raw_fd < 0 ||
		    setsockopt(raw_fd, SOL_SOCKET, SO_MARK, &copy_mark, sizeof copy_mark) < 0) {
			/* shaping goes on; only the copies may not reach a MAC netem did not make */
			fprintf(stderr, "netem engine: copies sent out of their packet's interface: "
					"no marked raw socket (needs CAP_NET_RAW): %s\n", strerror(errno));
			if (raw_fd >= 0)
				close(raw_fd);
			raw_fd = -1;
		}
	}
	/* any socket asking for timestamps makes the kernel stamp every packet it receives,
	   which gives queued packets their arrival time (ping does the same) */
	int stamp_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	setsockopt(stamp_fd, SOL_SOCKET, SO_TIMESTAMP, &one, sizeof one);

	int ep = epoll_create1(EPOLL_CLOEXEC);
	fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
	struct epoll_event ev = {.events = EPOLLIN};
	ev.data.fd = nfd;
	epoll_ctl(ep, EPOLL_CTL_ADD, nfd, &ev);
	ev.data.fd = 0;
	epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev);
	if (ep < 0)
		fail("cannot create an epoll instance");
	printf("ready\n");
	fflush(stdout);

	static char rbufs[RECV_BATCH][RECV_BUF];
	static struct iovec riov[RECV_BATCH];
	static struct mmsghdr rmsgs[RECV_BATCH];
	for (int j = 0; j < RECV_BATCH; j++) {
		riov[j].iov_base = rbufs[j];
		riov[j].iov_len = RECV_BUF;
		rmsgs[j].msg_hdr.msg_iov = &riov[j];
		rmsgs[j].msg_hdr.msg_iovlen = 1;
	}
	int64_t parent_checked = now_ns(), last_wake = 0, next_read = 0;
	int polling = 0; /* the queue socket is read on a clock, not on its readiness */
	while (!quitting && !got_signal) {
		struct epoll_event evs[4];
		/* Sleep until the earliest due time (epoll's own hrtimer: no timerfd to re-arm),
		   but wake on the timer at most once every WAKE_GAP_NS: on a VM each sleep
		   programs the timer (an exit to the hypervisor) and costs a context switch, so
		   at high packet rates a few packets are let go together, at most WAKE_GAP_NS
		   late. While packets flow, the queue socket is read every POLL_NS rather than
		   on every arrival: the kernel's timestamp gives each packet its arrival time,
		   so reading it a little later costs no accuracy (except to packets due sooner
		   than POLL_NS, reordered ones, which leave at most POLL_NS late). */
		int64_t wait = 500000000, now0 = now_ns();
		if (heap_n) {
			int64_t at = heap[0].due;
			if (at < last_wake + WAKE_GAP_NS)
				at = last_wake + WAKE_GAP_NS;
			wait = at - now0;
		}
		if (polling && next_read - now0 < wait)
			wait = next_read - now0;
		if (wait < 0)
			wait = 0;
		struct timespec timeout = {.tv_sec = wait / 1000000000, .tv_nsec = wait % 1000000000};
		int n = epoll_pwait2(ep, evs, 4, &timeout, NULL);
		if (n < 0 && errno != EINTR)
			break;
		int readable = 0;
		for (int i = 0; i < n; i++) {
			if (evs[i].data.fd == 0 && !control_read(0))
				quitting = 1;
			else if (evs[i].data.fd == nfd)
				readable = 1;
		}
		int64_t now = now_ns();
		if (n == 0)
			last_wake = now;
		if (now - parent_checked > 200000000) {
			if (getppid() != parent)
				break;
			parent_checked = now;
		}
		release_due(now);
		verdict_flush();
		if (readable || (polling && now >= next_read)) {
			int total = 0;
			/* drain the queue socket, a batch of messages a call, releasing due packets
			   and sending the gathered verdicts between batches */
			for (int k = 0; k < 64; k++) {
				int got = recvmmsg(nfd, rmsgs, RECV_BATCH, MSG_DONTWAIT, NULL);
				if (got <= 0)
					break;
				total += got;
				for (int j = 0; j < got; j++)
					nfq_handle_packet(nfq_h, rbufs[j], (int)rmsgs[j].msg_len);
				release_due(now_ns());
				verdict_flush();
				if (got < RECV_BATCH)
					break;
			}
			int want_polling = total > 0;
			if (want_polling != polling) {
				struct epoll_event qev = {.events = want_polling ? 0 : EPOLLIN};
				qev.data.fd = nfd;
				epoll_ctl(ep, EPOLL_CTL_MOD, nfd, &qev);
				polling = want_polling;
			}
			next_read = now + POLL_NS;
		}
		release_due(now_ns());
		verdict_flush();
	}
	/* leaving: let every held packet go now rather than have the kernel drop them */
	while (heap_n) {
		struct item it = heap_pop();
		if (it.kind == K_DUP || it.kind == K_DUP_CORRUPT)
			free(it.data);
		else
			release(&it, now_ns());
	}
	verdict_flush();
	nfq_destroy_queue(nfq_qh);
	nfq_close(nfq_h);
	return 0;
}
